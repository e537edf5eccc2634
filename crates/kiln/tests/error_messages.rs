//! What a user sees for a bad `prometheus.yml`, rule file or rule unit-test file: every
//! file of the corpus in `tests/fixtures/errors/` gets exactly the message in the table
//! below, `<path>:<line>:<column>: <what is wrong>` with the path as given, and
//! `kiln check rules` lists every problem of a file. As an interop test (built with
//! `KILN_INTEROP=1`), promtool 2.42 runs on the same files: it must fail (or pass) on each as Kiln does, or as
//! the table says where they differ on purpose (a limit of Kiln's YAML reader), and, where
//! the table says the wording is shared, say the same key phrases. Where Kiln's words
//! differ on purpose (Prometheus 3's wording, or clearer than Go's type names), the
//! case's comment says why.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::require_peer;

/// The command both tools run on a case's file, and the fixture directory it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `check config FILE`
    CheckConfig,
    /// `check rules FILE`
    CheckRules,
    /// `test rules FILE`
    TestRules,
}

impl Tool {
    fn args(self) -> [&'static str; 2] {
        match self {
            Tool::CheckConfig => ["check", "config"],
            Tool::CheckRules => ["check", "rules"],
            Tool::TestRules => ["test", "rules"],
        }
    }

    fn dir(self) -> PathBuf {
        let sub = match self {
            Tool::CheckConfig => "config",
            Tool::CheckRules => "rules",
            Tool::TestRules => "unit",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/errors")
            .join(sub)
    }
}

/// What promtool 2.42 makes of the same file.
#[derive(Debug, Clone, Copy)]
enum Promtool {
    /// It fails too, and both its output and Kiln's hold each of these phrases.
    Shares(&'static [&'static str]),
    /// It fails too, saying these phrases about the same problem in words of its own
    /// (Go type names, the YAML scanner's state); the case's comment says why Kiln's
    /// words differ.
    FailsSaying(&'static [&'static str]),
    /// It accepts the file, and so does Kiln.
    Passes,
    /// It accepts the file; Prometheus 3 refuses it, and Kiln follows 3.
    AcceptsUnlike3,
    /// It fails too, on another problem of the file that it meets first (Kiln refuses
    /// the file before it gets there), saying these phrases; the case's comment says
    /// which.
    FailsOnAnotherProblem(&'static [&'static str]),
    /// It accepts the file; Kiln refuses it on purpose, at a limit of its YAML reader
    /// that Prometheus does not have (docs/server.md lists them).
    AcceptsPastKilnLimit,
}

struct Case {
    tool: Tool,
    /// A file in the tool's fixture directory, given to both tools by this name (the
    /// tools run in that directory).
    file: &'static str,
    /// Kiln's report: the lines after `FAILED:` (one per problem), or the `SUCCESS`
    /// line. `{{promql:EXPR}}` stands for the PromQL parser's message for `EXPR`,
    /// which Kiln passes through unchanged.
    want: &'static str,
    promtool: Promtool,
}

use Promtool::{
    AcceptsPastKilnLimit, AcceptsUnlike3, FailsOnAnotherProblem, FailsSaying, Passes, Shares,
};
use Tool::{CheckConfig, CheckRules, TestRules};

const CASES: &[Case] = &[
    // --- prometheus.yml ------------------------------------------------------------
    Case {
        tool: CheckConfig,
        file: "unknown_key.yml",
        want: "unknown_key.yml:4:3: field scrape_intervall not found (did you mean scrape_interval?)",
        promtool: Shares(&["field scrape_intervall not found"]),
    },
    Case {
        tool: CheckConfig,
        file: "misspelt_key.yml",
        want: "misspelt_key.yml:4:5: field static_config not found (did you mean static_configs?)",
        promtool: Shares(&["field static_config not found"]),
    },
    // promtool: `field scrape_interval already set in type config.plain`. Kiln uses
    // Prometheus 3's rule-file wording (yaml.v3) everywhere, with the first line.
    Case {
        tool: CheckConfig,
        file: "duplicate_key.yml",
        want: "duplicate_key.yml:4:3: mapping key \"scrape_interval\" already defined at line 3",
        promtool: FailsSaying(&["field scrape_interval already set"]),
    },
    // promtool: `key "env" already set in map`.
    Case {
        tool: CheckConfig,
        file: "dup_label.yml",
        want: "dup_label.yml:6:29: mapping key \"env\" already defined at line 6",
        promtool: FailsSaying(&["key \"env\" already set in map"]),
    },
    // promtool names Go types: `cannot unmarshal !!str `rules.yml` into []string`.
    Case {
        tool: CheckConfig,
        file: "string_for_list.yml",
        want: "string_for_list.yml:2:13: rule_files must be a list, not \"rules.yml\"",
        promtool: FailsSaying(&["cannot unmarshal !!str `rules.yml` into []string"]),
    },
    // promtool: `cannot unmarshal !!str `many` into uint`.
    Case {
        tool: CheckConfig,
        file: "string_for_int.yml",
        want: "string_for_int.yml:4:19: sample_limit must be a whole number, 0 or more, not \"many\"",
        promtool: FailsSaying(&["cannot unmarshal !!str `many` into uint"]),
    },
    // promtool: `cannot unmarshal !!str `maybe` into bool`.
    Case {
        tool: CheckConfig,
        file: "bad_bool.yml",
        want: "bad_bool.yml:4:19: honor_labels must be true or false, not \"maybe\"",
        promtool: FailsSaying(&["cannot unmarshal !!str `maybe` into bool"]),
    },
    // promtool: `cannot unmarshal !!map into []*config.ScrapeConfig`.
    Case {
        tool: CheckConfig,
        file: "map_for_list.yml",
        want: "map_for_list.yml:3:3: scrape_configs must be a list, not a mapping",
        promtool: FailsSaying(&["cannot unmarshal !!map into []*config.ScrapeConfig"]),
    },
    // promtool: `cannot unmarshal !!int `5` into config.plain`.
    Case {
        tool: CheckConfig,
        file: "scalar_section.yml",
        want: "scalar_section.yml:2:9: global must be a mapping (key: value pairs), not \"5\"",
        promtool: FailsSaying(&["cannot unmarshal !!int `5`"]),
    },
    // promtool: `cannot unmarshal !!seq into config.plain`.
    Case {
        tool: CheckConfig,
        file: "bare_list.yml",
        want: "bare_list.yml:2:1: a Prometheus configuration file is a mapping of sections \
               (global:, scrape_configs:, ...), not a list",
        promtool: FailsSaying(&["line 2: cannot unmarshal !!seq"]),
    },
    Case {
        tool: CheckConfig,
        file: "bad_duration.yml",
        want: "bad_duration.yml:3:20: scrape_interval: not a valid duration string: \"5x\"",
        promtool: Shares(&["not a valid duration string: \"5x\""]),
    },
    // promtool quotes Go's regexp package (`missing closing ): `^(?:()$``), Kiln the
    // reason without the anchored pattern it compiles.
    Case {
        tool: CheckConfig,
        file: "bad_regex.yml",
        want: "bad_regex.yml:5:9: scrape_configs[0] (job \"a\"): relabel_configs[0]: invalid \
               relabel regex \"(\": unclosed group",
        promtool: FailsSaying(&["error parsing regexp: missing closing )"]),
    },
    Case {
        tool: CheckConfig,
        file: "bad_label_name.yml",
        want: "bad_label_name.yml:7:11: scrape_configs[0] (job \"a\"): static_configs[0]: \
               \"0bad\" is not a valid label name in static_configs labels",
        promtool: Shares(&["\"0bad\" is not a valid label name"]),
    },
    Case {
        tool: CheckConfig,
        file: "bad_target_label.yml",
        want: "bad_target_label.yml:5:9: scrape_configs[0] (job \"a\"): relabel_configs[0]: \
               \"0x\" is invalid 'target_label' for replace action",
        promtool: Shares(&["\"0x\" is invalid 'target_label' for replace action"]),
    },
    Case {
        tool: CheckConfig,
        file: "bad_relabel_action.yml",
        want: "bad_relabel_action.yml:5:9: scrape_configs[0] (job \"a\"): relabel_configs[0]: \
               unknown relabel action \"kepe\"",
        promtool: Shares(&["unknown relabel action \"kepe\""]),
    },
    Case {
        tool: CheckConfig,
        file: "hashmod_no_modulus.yml",
        want: "hashmod_no_modulus.yml:5:9: scrape_configs[0] (job \"a\"): relabel_configs[0]: \
               relabel configuration for hashmod requires non-zero modulus",
        promtool: Shares(&["relabel configuration for hashmod requires non-zero modulus"]),
    },
    // promtool quotes Go's url.Parse (`missing protocol scheme`).
    Case {
        tool: CheckConfig,
        file: "bad_url.yml",
        want: "bad_url.yml:3:10: remote_write[0]: url \"::not a url\": want an http:// or \
               https:// URL with a host",
        promtool: Shares(&["\"::not a url\""]),
    },
    Case {
        tool: CheckConfig,
        file: "rw_no_url.yml",
        want: "rw_no_url.yml:3:5: remote_write[0]: url for remote_write is empty",
        promtool: Shares(&["url for remote_write is empty"]),
    },
    // promtool: the scanner's `found character that cannot start any token`.
    Case {
        tool: CheckConfig,
        file: "tabs.yml",
        want: "tabs.yml:3:1: tabs are not allowed for indentation in YAML; indent with spaces",
        promtool: FailsSaying(&["line 3: found character that cannot start any token"]),
    },
    Case {
        tool: CheckConfig,
        file: "bad_indent.yml",
        want: "bad_indent.yml:4:20: mapping values are not allowed in this context (check the \
               indentation of this line and the one above)",
        promtool: Shares(&["mapping values are not allowed in this context"]),
    },
    // promtool: the scanner's `did not find expected node content`.
    Case {
        tool: CheckConfig,
        file: "unclosed_flow.yml",
        want: "unclosed_flow.yml:2:17: unclosed bracket '['",
        promtool: FailsSaying(&["line 2: did not find expected node content"]),
    },
    Case {
        tool: CheckConfig,
        file: "empty.yml",
        want: "SUCCESS: empty.yml is valid prometheus config file syntax",
        promtool: Passes,
    },
    Case {
        tool: CheckConfig,
        file: "missing_job_name.yml",
        want: "missing_job_name.yml:3:5: scrape_configs[0]: job_name is empty",
        promtool: Shares(&["job_name is empty"]),
    },
    // promtool (whose Debian build has no Consul discovery either) says the field is
    // not found; Kiln says why.
    Case {
        tool: CheckConfig,
        file: "unknown_sd.yml",
        want: "unknown_sd.yml:4:5: consul_sd_configs is a Prometheus service discovery that \
               Kiln does not have (Kiln supports static_configs, file_sd_configs, \
               http_sd_configs, dns_sd_configs and kubernetes_sd_configs)",
        promtool: Shares(&["consul_sd_configs"]),
    },
    Case {
        tool: CheckConfig,
        file: "timeout_gt_interval.yml",
        want: "timeout_gt_interval.yml:5:21: scrape_configs[0] (job \"a\"): scrape timeout 10s \
               greater than scrape interval 5s",
        promtool: Shares(&["greater than scrape interval"]),
    },
    Case {
        tool: CheckConfig,
        file: "global_timeout.yml",
        want: "global_timeout.yml:4:19: global: scrape timeout 20s greater than scrape \
               interval 10s",
        promtool: Shares(&["greater than scrape interval"]),
    },
    Case {
        tool: CheckConfig,
        file: "duplicate_job.yml",
        want: "duplicate_job.yml:4:15: scrape_configs[1]: found multiple scrape configs with \
               job name \"a\" (the first is scrape_configs[0])",
        promtool: Shares(&["found multiple scrape configs with job name \"a\""]),
    },
    Case {
        tool: CheckConfig,
        file: "target_with_scheme.yml",
        want: "target_with_scheme.yml:5:18: scrape_configs[0] (job \"a\"): static_configs[0]: \
               \"http://a:1\" is not a valid hostname",
        promtool: Shares(&["\"http://a:1\" is not a valid hostname"]),
    },
    // promtool: `... for all record types except SRV`; Kiln names the type written.
    Case {
        tool: CheckConfig,
        file: "dns_no_port.yml",
        want: "dns_no_port.yml:5:9: scrape_configs[0] (job \"a\"): dns_sd_configs[0]: a port \
               is required in DNS-SD configs for A records",
        promtool: Shares(&["a port is required in DNS-SD configs"]),
    },
    Case {
        tool: CheckConfig,
        file: "file_sd_ext.yml",
        want: "file_sd_ext.yml:5:9: scrape_configs[0] (job \"a\"): file_sd_configs[0]: path \
               \"targets.txt\" is not valid for file discovery: it must end in .json, .yml or \
               .yaml",
        promtool: Shares(&["\"targets.txt\" is not valid for file discovery"]),
    },
    // Kiln has no oauth2 to list among the choices.
    Case {
        tool: CheckConfig,
        file: "two_auths.yml",
        want: "two_auths.yml:5:20: scrape_configs[0] (job \"a\"): at most one of basic_auth \
               and authorization must be configured",
        promtool: Shares(&["at most one of basic_auth"]),
    },
    // Alertmanager removed API v1; Prometheus 3 refuses it with these words.
    Case {
        tool: CheckConfig,
        file: "am_api_v1.yml",
        want: "am_api_v1.yml:4:20: alerting: alertmanagers[0]: expected Alertmanager api \
               version to be one of [v2] but got v1",
        promtool: AcceptsUnlike3,
    },
    // Prometheus 3 checks queue_config (`remote write queue max_shards must be
    // positive`); 2.42 did not.
    Case {
        tool: CheckConfig,
        file: "negative_shards.yml",
        want: "negative_shards.yml:5:7: remote_write[0]: queue_config: max_shards must be \
               greater than 0, got -1",
        promtool: AcceptsUnlike3,
    },
    // --- YAML documents over the reader's limits -------------------------------------
    // A "billion laughs" alias bomb in `storage:`, which Kiln accepts whole without
    // applying it; promtool meets the keys StorageConfig does not have first.
    Case {
        tool: CheckConfig,
        file: "yaml_bomb.yml",
        want: "yaml_bomb.yml:10:17: aliases (`*name`) expand to more than 250,000 YAML nodes \
               (values, lists and mappings), the most Kiln reads from one file; this is what \
               a YAML bomb (\"billion laughs\") looks like. Write the repeated parts out, or \
               reuse anchors less",
        promtool: FailsOnAnotherProblem(&["field l0 not found in type config.StorageConfig"]),
    },
    // promtool meets a list where `storage.tsdb` is a mapping first.
    Case {
        tool: CheckConfig,
        file: "too_deep.yml",
        want: "too_deep.yml:3:73: lists and mappings are nested more than 64 levels deep \
               here, the most Kiln reads (no configuration needs as many; look for unclosed \
               `[` or `{`)",
        promtool: FailsOnAnotherProblem(&["cannot unmarshal !!seq into config.plain"]),
    },
    Case {
        tool: CheckConfig,
        file: "too_many_nodes.yml",
        want: "too_many_nodes.yml:1256:389: the document is too large: it holds more than \
               250,000 YAML nodes (values, lists and mappings), the most Kiln reads from one \
               file; split it into several smaller files",
        promtool: AcceptsPastKilnLimit,
    },
    // --- rule files ----------------------------------------------------------------
    // promtool: `cannot unmarshal !!seq into rulefmt.RuleGroups`.
    Case {
        tool: CheckRules,
        file: "bare_list.yml",
        want: "bare_list.yml:2:1: a rule file is a mapping with `groups:` (a list of rule \
               groups), not a list",
        promtool: FailsSaying(&["line 2: cannot unmarshal !!seq into rulefmt.RuleGroups"]),
    },
    Case {
        tool: CheckRules,
        file: "scalar.yml",
        want: "scalar.yml:2:1: a rule file is a mapping with `groups:` (a list of rule \
               groups), not \"just some text\"",
        promtool: FailsSaying(&["line 2: cannot unmarshal !!str"]),
    },
    Case {
        tool: CheckRules,
        file: "empty.yml",
        want: "SUCCESS: 0 rules found",
        promtool: Passes,
    },
    Case {
        tool: CheckRules,
        file: "unknown_key.yml",
        want: "unknown_key.yml:4:5: field rulez not found (did you mean rules?)",
        promtool: Shares(&["field rulez not found"]),
    },
    // The same words as promtool (both use yaml.v3's).
    Case {
        tool: CheckRules,
        file: "duplicate_key.yml",
        want: "duplicate_key.yml:7:9: mapping key \"expr\" already defined at line 6",
        promtool: Shares(&["mapping key \"expr\" already defined at line 6"]),
    },
    Case {
        tool: CheckRules,
        file: "bad_duration.yml",
        want: "bad_duration.yml:4:15: interval: not a valid duration string: \"5x\"",
        promtool: Shares(&["not a valid duration string: \"5x\""]),
    },
    // promtool: `cannot unmarshal !!str `up` into []rulefmt.RuleNode`.
    Case {
        tool: CheckRules,
        file: "rules_string.yml",
        want: "rules_string.yml:4:12: rules must be a list, not \"up\"",
        promtool: FailsSaying(&["cannot unmarshal !!str `up` into []rulefmt.RuleNode"]),
    },
    Case {
        tool: CheckRules,
        file: "groups_map.yml",
        want: "groups_map.yml:3:3: groups must be a list, not a mapping",
        promtool: FailsSaying(&["line 3: cannot unmarshal !!map"]),
    },
    Case {
        tool: CheckRules,
        file: "limit_string.yml",
        want: "limit_string.yml:4:12: limit must be a whole number, not \"many\"",
        promtool: FailsSaying(&["cannot unmarshal !!str `many` into int"]),
    },
    Case {
        tool: CheckRules,
        file: "bad_indent.yml",
        want: "bad_indent.yml:6:8: did not find expected '-' indicator (check the indentation \
               of this line and the one above)",
        promtool: Shares(&["did not find expected '-' indicator"]),
    },
    // promtool: the scanner's `found character that cannot start any token`.
    Case {
        tool: CheckRules,
        file: "tabs.yml",
        want: "tabs.yml:5:1: tabs are not allowed for indentation in YAML; indent with spaces",
        promtool: FailsSaying(&["line 5: found character that cannot start any token"]),
    },
    // promtool: `Groupname must not be empty`.
    Case {
        tool: CheckRules,
        file: "no_group_name.yml",
        want: "no_group_name.yml:3:5: group \"\": group name must not be empty",
        promtool: Shares(&["3:5", "must not be empty"]),
    },
    // 2.42 checks classic metric names (`invalid recording rule name`); Prometheus 3
    // allows UTF-8 names but refuses braces, in these words.
    Case {
        tool: CheckRules,
        file: "braces.yml",
        want: "braces.yml:5:17: group \"g\", rule 1, \"job:up{job=\\\"a\\\"}\": braces present \
               in the recording rule name; should it be in expr?: job:up{job=\"a\"}",
        promtool: Shares(&["5:17: group \"g\", rule 1"]),
    },
    Case {
        tool: CheckRules,
        file: "bad_template.yml",
        want: "bad_template.yml:8:11: group \"g\", rule 1, \"A\": label \"severity\": template: \
               __alert_A:1: unclosed action",
        promtool: Shares(&[
            "group \"g\", rule 1, \"A\": label \"severity\": template: __alert_A:1: unclosed action",
        ]),
    },
    // Every problem, in file order, as promtool lists them. promtool gives two places
    // for `record` + `alert` (Kiln the second) and none (0:0) for missing fields (Kiln
    // the rule's).
    Case {
        tool: CheckRules,
        file: "many_errors.yml",
        want: "many_errors.yml:6:15: group \"g\", rule 1, \"x\": could not parse expression: \
               {{promql:sum(}}\n\
               many_errors.yml:8:16: group \"g\", rule 2, \"Y\": only one of 'record' and \
               'alert' must be set\n\
               many_errors.yml:10:9: group \"g\", rule 3, \"\": one of 'record' or 'alert' must \
               be set\n\
               many_errors.yml:11:9: group \"g\", rule 4, \"z\": field 'expr' must be set in rule\n\
               many_errors.yml:14:14: group \"g\", rule 5, \"w\": invalid field 'for' in \
               recording rule\n\
               many_errors.yml:18:11: group \"g\", rule 6, \"A\": annotation \"summary\": \
               template: __alert_A:1: unclosed action\n\
               many_errors.yml:22:11: group \"g\", rule 7, \"v\": invalid label name: \
               \"__name__\"\n\
               many_errors.yml:23:5: group \"g\": groupname: \"g\" is repeated in the same file",
        promtool: Shares(&[
            "6:15: group \"g\", rule 1, \"x\": could not parse expression",
            "group \"g\", rule 2, \"Y\": only one of 'record' and 'alert' must be set",
            "group \"g\", rule 3, \"\": one of 'record' or 'alert' must be set",
            "group \"g\", rule 4, \"z\": field 'expr' must be set in rule",
            "group \"g\", rule 5, \"w\": invalid field 'for' in recording rule",
            "group \"g\", rule 6, \"A\": annotation \"summary\": template: __alert_A:1: \
             unclosed action",
            "group \"g\", rule 7, \"v\": invalid label name",
            "groupname: \"g\" is repeated in the same file",
        ]),
    },
    // Bad queries: the parser's words after the rule's place, in both groups.
    Case {
        tool: CheckRules,
        file: "bad_queries.yml",
        want: "bad_queries.yml:6:15: group \"queries\", rule 1, \"job:a\": could not parse \
               expression: {{promql:sum(rate(http_requests_total[5m])}}\n\
               bad_queries.yml:8:15: group \"queries\", rule 2, \"job:b\": could not parse \
               expression: {{promql:rate(http_requests_total[5x])}}\n\
               bad_queries.yml:10:15: group \"queries\", rule 3, \"job:c\": could not parse \
               expression: {{promql:up +}}\n\
               bad_queries.yml:16:15: group \"more\", rule 1, \"D\": could not parse \
               expression: {{promql:histogram_quantile(0.9)}}\n\
               bad_queries.yml:18:15: group \"more\", rule 2, \"E\": could not parse \
               expression: {{promql:no_such_function(up)}}\n\
               bad_queries.yml:20:15: group \"more\", rule 3, \"job:f\": could not parse \
               expression: {{promql:up{job=}}}",
        promtool: Shares(&[
            "6:15: group \"queries\", rule 1, \"job:a\": could not parse expression",
            "8:15: group \"queries\", rule 2, \"job:b\": could not parse expression",
            "10:15: group \"queries\", rule 3, \"job:c\": could not parse expression",
            "16:15: group \"more\", rule 1, \"D\": could not parse expression",
            "18:15: group \"more\", rule 2, \"E\": could not parse expression",
            "20:15: group \"more\", rule 3, \"job:f\": could not parse expression",
        ]),
    },
    // --- rule unit-test files ------------------------------------------------------
    Case {
        tool: TestRules,
        file: "unknown_key.yml",
        want: "unknown_key.yml:3:1: field testz not found (did you mean tests?)",
        promtool: Shares(&["field testz not found"]),
    },
    Case {
        tool: TestRules,
        file: "string_for_list.yml",
        want: "string_for_list.yml:2:13: rule_files must be a list, not \"rules.yml\"",
        promtool: FailsSaying(&["cannot unmarshal !!str `rules.yml` into []string"]),
    },
    Case {
        tool: TestRules,
        file: "bad_duration.yml",
        want: "bad_duration.yml:3:22: evaluation_interval: not a valid duration string: \"1x\"",
        promtool: Shares(&["not a valid duration string: \"1x\""]),
    },
    // promtool: `cannot unmarshal !!seq into main.unitTestFile`.
    Case {
        tool: TestRules,
        file: "bare_list.yml",
        want: "bare_list.yml:2:1: a rule test file is a mapping with `rule_files:` and \
               `tests:`, not a list",
        promtool: FailsSaying(&["line 2: cannot unmarshal !!seq"]),
    },
];

/// Fixture files that are not cases: the rules the unit-test cases load.
const HELPERS: &[(Tool, &str)] = &[(TestRules, "rules.yml")];

fn run(program: &str, tool: Tool, file: &str) -> Output {
    Command::new(program)
        .args(tool.args())
        .arg(file)
        .current_dir(tool.dir())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Kiln's report for one file: the lines after `FAILED:` up to the blank line that ends
/// the file's report, trimmed; or the last `SUCCESS` line.
fn report(output: &str) -> String {
    if let Some((_, after)) = output.split_once("FAILED:") {
        let lines: Vec<&str> = after
            .lines()
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.trim().is_empty())
            .map(|(_, l)| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        return lines.join("\n");
    }
    output
        .lines()
        .rfind(|l| l.contains("SUCCESS"))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// The expected report, with each `{{promql:EXPR}}` replaced by the parser's message.
fn expand(want: &str) -> String {
    let mut out = String::new();
    let mut rest = want;
    while let Some(start) = rest.find("{{promql:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "{{promql:".len()..];
        // The expression runs to the last `}}` before the end of its line.
        let line_end = after.find('\n').unwrap_or(after.len());
        let end = after[..line_end]
            .rfind("}}")
            .expect("closing }} of {{promql:");
        let expr = &after[..end];
        let error = kiln_promql::validate_query(expr)
            .expect_err("a {{promql:}} expression must be invalid");
        out.push_str(&error.to_string());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn check(case: &Case) -> Option<String> {
    let out = run(env!("CARGO_BIN_EXE_kiln"), case.tool, case.file);
    let got = report(&text(&out));
    let want = expand(case.want);
    let passes = want.starts_with("SUCCESS");
    let code_ok = out.status.code() == Some(if passes { 0 } else { 1 });
    if got == want && code_ok {
        return None;
    }
    Some(format!(
        "kiln {} {} (exit {:?}):\n  got:  {got}\n  want: {want}",
        case.tool.args().join(" "),
        case.file,
        out.status.code()
    ))
}

#[test]
fn every_bad_file_gets_its_message() {
    let failures: Vec<String> = CASES.iter().filter_map(check).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_is_consistent_with_the_corpus() {
    // Every fixture is a case (or a helper), and every case's file exists.
    for tool in [CheckConfig, CheckRules, TestRules] {
        let mut files: Vec<String> = std::fs::read_dir(tool.dir())
            .expect("fixture dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        files.sort();
        for f in &files {
            let known = CASES.iter().any(|c| c.tool == tool && c.file == f)
                || HELPERS.contains(&(tool, f.as_str()));
            assert!(known, "{f} in {} has no case", tool.dir().display());
        }
    }
    for case in CASES {
        assert!(
            case.tool.dir().join(case.file).is_file(),
            "{} missing",
            case.file
        );
        // A shared phrase is shared: Kiln's message holds it too.
        if let Shares(phrases) = case.promtool {
            let want = expand(case.want);
            for phrase in phrases {
                assert!(
                    want.contains(phrase),
                    "{}: {phrase:?} not in {want:?}",
                    case.file
                );
            }
        }
    }
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_agrees_on_every_file() {
    require_peer("promtool", "prometheus");
    let mut failures = Vec::new();
    for case in CASES {
        let out = run("promtool", case.tool, case.file);
        let said = text(&out);
        let accepted = out.status.success();
        let problem = match case.promtool {
            Passes | AcceptsUnlike3 | AcceptsPastKilnLimit if !accepted => {
                Some("promtool refused it".to_owned())
            }
            Shares(_) | FailsSaying(_) | FailsOnAnotherProblem(_) if accepted => {
                Some("promtool accepted it".to_owned())
            }
            Shares(phrases) | FailsSaying(phrases) | FailsOnAnotherProblem(phrases) => phrases
                .iter()
                .find(|p| !said.contains(**p))
                .map(|p| format!("promtool does not say {p:?}")),
            _ => None,
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}:\n{said}", case.file));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
