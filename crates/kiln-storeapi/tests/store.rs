//! The StoreAPI served over a real gRPC connection on loopback, read with the generated
//! client: series with external labels (in answer order), frames, limits, labels-only
//! answers, label names and values, Info, and bad requests.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use kiln_model::Labels;
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, SampleValue};
use kiln_storeapi::proto::thanos::info::InfoRequest;
use kiln_storeapi::proto::thanos::info::info_client::InfoClient;
use kiln_storeapi::proto::thanos::store_client::StoreClient;
use kiln_storeapi::proto::thanos::{
    LabelMatcher, LabelNamesRequest, LabelValuesRequest, SeriesRequest, label_matcher,
    series_response,
};
use kiln_storeapi::{StoreOptions, StoreService, serve};
use tonic::transport::Channel;

fn eq(name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: label_matcher::Type::Eq as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn re(name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: label_matcher::Type::Re as i32,
        name: name.into(),
        value: value.into(),
    }
}

/// A store over three series, two of them such that setting `replica` reorders them
/// (`up{a="1"}` sorts before `up{a="1",b="2"}`, but after it once `replica` is set).
fn storage() -> Arc<MemStorage> {
    let st = Arc::new(MemStorage::new());
    let series = [
        Labels::from_pairs(&[("__name__", "up"), ("a", "1")]),
        Labels::from_pairs(&[("__name__", "up"), ("a", "1"), ("b", "2")]),
        Labels::from_pairs(&[("__name__", "up"), ("a", "2")]),
    ];
    let mut app = st.appender();
    for (i, l) in series.iter().enumerate() {
        for t in 0..300i64 {
            app.append(
                0,
                l,
                t * 15_000,
                SampleValue::Float((i as i64 * 1000 + t) as f64),
            )
            .unwrap();
        }
    }
    app.commit().unwrap();
    drop(app);
    st
}

struct Running {
    channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(opts: StoreOptions) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = StoreService::new(
        storage(),
        Labels::from_pairs(&[("cluster", "eu-1"), ("replica", "0")]),
        Arc::new(|| Some((0, i64::MAX))),
        opts,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(service, listener, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        channel,
        stop: Some(stop),
    }
}

/// Every series message of a call: labels as text, and the samples of its chunks.
async fn series(
    client: &mut StoreClient<Channel>,
    req: SeriesRequest,
) -> Result<Vec<(String, Vec<(i64, f64)>)>, tonic::Status> {
    let mut stream = client.series(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await? {
        let Some(series_response::Result::Series(s)) = msg.result else {
            continue;
        };
        let labels = s
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect::<Vec<_>>()
            .join(",");
        let mut samples = Vec::new();
        for c in &s.chunks {
            let raw = c.raw.as_ref().unwrap();
            assert_eq!(raw.r#type, 0, "XOR");
            let mut it = kiln_chunkenc::XorIterator::new(&raw.data);
            while it.next() {
                samples.push(it.at());
            }
        }
        out.push((labels, samples));
    }
    Ok(out)
}

#[tokio::test]
async fn series_with_external_labels_in_answer_order() {
    let running = start(StoreOptions::default()).await;
    let mut client = StoreClient::new(running.channel.clone());
    let got = series(
        &mut client,
        SeriesRequest {
            min_time: 0,
            max_time: i64::MAX,
            matchers: vec![eq("__name__", "up"), eq("cluster", "eu-1")],
            ..SeriesRequest::default()
        },
    )
    .await
    .unwrap();
    let names: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        names,
        [
            "__name__=up,a=1,b=2,cluster=eu-1,replica=0",
            "__name__=up,a=1,cluster=eu-1,replica=0",
            "__name__=up,a=2,cluster=eu-1,replica=0",
        ],
        "sorted by the labels as sent"
    );
    assert_eq!(got[0].1.len(), 300);
    assert_eq!(got[0].1[299], (299 * 15_000, 1299.0));
    assert_eq!(got[1].1[0], (0, 0.0));

    // Without the replica label, the stored order holds again.
    let got = series(
        &mut client,
        SeriesRequest {
            min_time: 0,
            max_time: i64::MAX,
            matchers: vec![re("a", "1|2")],
            without_replica_labels: vec!["replica".into()],
            skip_chunks: true,
            ..SeriesRequest::default()
        },
    )
    .await
    .unwrap();
    let names: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        names,
        [
            "__name__=up,a=1,b=2,cluster=eu-1",
            "__name__=up,a=1,cluster=eu-1",
            "__name__=up,a=2,cluster=eu-1",
        ]
    );
    assert!(got.iter().all(|(_, s)| s.is_empty()), "labels only");

    // A matcher the external labels fail: nothing, without touching the storage.
    let none = series(
        &mut client,
        SeriesRequest {
            max_time: i64::MAX,
            matchers: vec![eq("__name__", "up"), eq("cluster", "us-1")],
            ..SeriesRequest::default()
        },
    )
    .await
    .unwrap();
    assert!(none.is_empty());

    let limited = series(
        &mut client,
        SeriesRequest {
            max_time: i64::MAX,
            matchers: vec![eq("__name__", "up")],
            limit: 2,
            ..SeriesRequest::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(limited.len(), 2);
}

#[tokio::test]
async fn large_series_come_in_several_frames() {
    let running = start(StoreOptions {
        max_bytes_per_frame: 1,
        ..StoreOptions::default()
    })
    .await;
    let mut client = StoreClient::new(running.channel.clone());
    let got = series(
        &mut client,
        SeriesRequest {
            max_time: i64::MAX,
            matchers: vec![eq("a", "2")],
            ..SeriesRequest::default()
        },
    )
    .await
    .unwrap();
    // 300 samples are three chunks, one frame each, all with the series' labels.
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|(l, _)| l == "__name__=up,a=2,cluster=eu-1,replica=0")
    );
    let samples: usize = got.iter().map(|(_, s)| s.len()).sum();
    assert_eq!(samples, 300);
}

#[tokio::test]
async fn label_calls_and_info() {
    let running = start(StoreOptions::default()).await;
    let mut client = StoreClient::new(running.channel.clone());
    let names = client
        .label_names(LabelNamesRequest {
            start: 0,
            end: i64::MAX,
            ..LabelNamesRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["__name__", "a", "b", "cluster", "replica"]);
    let values = |label: &str, matchers: Vec<LabelMatcher>| LabelValuesRequest {
        label: label.into(),
        start: 0,
        end: i64::MAX,
        matchers,
        ..LabelValuesRequest::default()
    };
    let a = client.label_values(values("a", vec![])).await.unwrap();
    assert_eq!(a.into_inner().values, ["1", "2"]);
    let cluster = client
        .label_values(values("cluster", vec![eq("a", "2")]))
        .await
        .unwrap();
    assert_eq!(cluster.into_inner().values, ["eu-1"]);
    let b = client
        .label_values(values("b", vec![eq("replica", "1")]))
        .await
        .unwrap();
    assert!(b.into_inner().values.is_empty());
    let empty = client.label_values(values("", vec![])).await.unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);

    let info = InfoClient::new(running.channel.clone())
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.component_type, "sidecar");
    assert_eq!(info.label_sets.len(), 1);
    assert_eq!(info.label_sets[0].labels.len(), 2);
    let store = info.store.unwrap();
    assert_eq!((store.min_time, store.max_time), (0, i64::MAX));
    assert!(store.supports_without_replica_labels);
}

#[tokio::test]
async fn bad_requests_are_invalid_arguments() {
    let running = start(StoreOptions::default()).await;
    let mut client = StoreClient::new(running.channel.clone());
    for matchers in [vec![], vec![eq("cluster", "eu-1")], vec![re("a", "(")]] {
        let err = series(
            &mut client,
            SeriesRequest {
                max_time: i64::MAX,
                matchers,
                ..SeriesRequest::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    }
}
