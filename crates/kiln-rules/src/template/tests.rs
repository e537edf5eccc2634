use super::*;

fn data() -> TemplateData {
    TemplateData {
        labels: [("instance", "gpu-node-1:9400"), ("job", "dcgm")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        external_labels: [("cluster".to_string(), "train-a".to_string())].into(),
        external_url: "http://kiln.example:9090/prom".into(),
        value: 0.1234567,
    }
}

fn run(text: &str) -> String {
    expand(text, &data(), 1_700_000_000.0, None).unwrap_or_else(|e| format!("ERROR: {e}"))
}

#[test]
fn alert_variables_and_fields() {
    assert_eq!(
        run("{{ $labels.instance }} of {{ .Labels.job }} in {{ $externalLabels.cluster }}"),
        "gpu-node-1:9400 of dcgm in train-a"
    );
    assert_eq!(run("{{ $value }}"), "0.1234567");
    assert_eq!(run("{{ $externalURL }}"), "http://kiln.example:9090/prom");
    assert_eq!(run("no template here"), "no template here");
    assert_eq!(run(""), "");
    assert_eq!(run("{{ $x := 1 }}"), "");
}

#[test]
fn floats_print_like_go() {
    let mut d = data();
    d.value = 1_234_567.0;
    let out = expand("{{ $value }} {{ .Value }}", &d, 0.0, None).expect("expands");
    assert_eq!(out, "1.234567e+06 1.234567e+06");
    d.value = f64::INFINITY;
    assert_eq!(
        expand("{{ $value }}", &d, 0.0, None).expect("expands"),
        "+Inf"
    );
    d.value = 3.0;
    assert_eq!(
        expand(
            "{{ if gt $value 2.0 }}high{{ else }}low{{ end }}",
            &d,
            0.0,
            None
        )
        .expect("expands"),
        "high"
    );
}

#[test]
fn prometheus_functions() {
    assert_eq!(run("{{ $value | humanizePercentage }}"), "12.35%");
    assert_eq!(run("{{ humanize 1234567.0 }}"), "1.235M");
    assert_eq!(run("{{ 2048 | humanize1024 }}"), "2ki");
    assert_eq!(run("{{ humanizeDuration 3725 }}"), "1h 2m 5s");
    assert_eq!(run("{{ \"90\" | humanizeDuration }}"), "1m 30s");
    assert_eq!(
        run("{{ humanizeTimestamp 0 }}"),
        "1970-01-01 00:00:00 +0000 UTC"
    );
    assert_eq!(run("{{ $labels.instance | stripPort }}"), "gpu-node-1");
    assert_eq!(
        run("{{ toUpper \"a\" }}{{ toLower \"B\" }}{{ title \"gpu idle\" }}"),
        "AbGpu Idle"
    );
    assert_eq!(
        run("{{ if match \"^gpu\" $labels.instance }}yes{{ end }}"),
        "yes"
    );
    assert_eq!(
        run("{{ reReplaceAll \"-node-(\\\\d+)\" \"#$1\" $labels.instance }}"),
        "gpu#1:9400"
    );
    assert_eq!(run("{{ parseDuration \"1m30s\" }}"), "90");
    assert_eq!(
        run("{{ graphLink \"up == 0\" }}"),
        "/graph?g0.expr=up+%3D%3D+0&g0.tab=0"
    );
    assert_eq!(run("{{ pathPrefix }}"), "/prom");
    assert_eq!(run("{{ now }}"), "1.7e+09");
    assert_eq!(run("{{ printf \"%.1f\" $value }}"), "0.1");
    assert_eq!(run("{{ with args 1 \"x\" }}{{ .arg1 }}{{ end }}"), "x");
}

#[test]
fn query_function_feeds_pipelines() {
    let query: QueryFn = Arc::new(|q: &str| {
        assert_eq!(q, "gpu_util");
        Ok(vec![
            QuerySample {
                labels: [("gpu".to_string(), "1".to_string())].into(),
                value: 90.0,
            },
            QuerySample {
                labels: [("gpu".to_string(), "0".to_string())].into(),
                value: 10.0,
            },
        ])
    });
    let out = expand(
        "{{ range query \"gpu_util\" | sortByLabel \"gpu\" }}{{ .Labels.gpu }}={{ .Value }} {{ end }}\
         first={{ with query \"gpu_util\" }}{{ . | first | value }}{{ end }}",
        &data(),
        0.0,
        Some(query),
    )
    .expect("expands");
    assert_eq!(out, "0=10 1=90 first=90");
}

#[test]
fn errors() {
    // Prometheus's wording: the alert's template name and the line, no column.
    assert_eq!(
        check("{{ $labels.x ", "A"),
        Err("template: __alert_A:1: unclosed action".to_owned())
    );
    assert_eq!(
        check("line one\n{{ .Foo ", "A"),
        Err("template: __alert_A:2: unclosed action".to_owned())
    );
    let e = check("{{ humanise $value }}", "A").expect_err("unknown function");
    assert_eq!(e, "template: __alert_A: function \"humanise\" not defined");
    assert!(check("{{ if true }}{{ nosuch }}{{ end }}", "A").is_err());
    assert!(check("{{ $value | humanize }} {{ len $labels }}", "A").is_ok());
    assert!(run("{{ first (query \"x\") }}").starts_with("ERROR"));
}
