//! The processor's timing: traces held until `decision_wait`, late spans
//! following the remembered decision, `num_traces` deciding early, `flush`
//! deciding everything; and released spans keeping their resource and scope.

#![allow(clippy::unwrap_used)]
use super::*;
use magpie_core::config::{Node, from_node};
use magpie_core::otlp::kv_str;
use magpie_core::proto::trace::v1::{Status, status::StatusCode};
use std::collections::BTreeMap;

fn processor(yaml: &str) -> TailSamplingProcessor {
    let node = Node::parse(yaml, "test.yaml").unwrap();
    let (c, _) =
        from_node::<TailSamplingConfig>(&node, "processors.tail_sampling").unwrap_or_else(|e| panic!("{e}"));
    TailSamplingProcessor::new(&c, &"tail_sampling".parse().unwrap())
}

const ERRORS: &str = "policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]\n";

fn span(trace: u8, n: u8, error: bool) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace, n, 0, 0, 0, 0, 0, 1],
        name: format!("t{trace} s{n}"),
        status: Some(Status {
            code: if error { StatusCode::Error } else { StatusCode::Ok } as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// A batch of (service, scope, spans).
fn batch(parts: Vec<(&str, &str, Vec<Span>)>) -> Batch {
    Batch::Traces(
        parts
            .into_iter()
            .map(|(service, scope, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: scope.into(), ..Default::default() }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    )
}

/// Spans out, as "service/scope/span name", sorted.
fn names(out: &[Batch]) -> Vec<String> {
    let mut v = Vec::new();
    for b in out {
        let Batch::Traces(rs) = b else { panic!("signal changed") };
        for r in rs {
            let service = magpie_core::otlp::service_name(r.resource.as_ref()).unwrap();
            for s in &r.scope_spans {
                for span in &s.spans {
                    v.push(format!("{service}/{}/{}", s.scope.as_ref().unwrap().name, span.name));
                }
            }
        }
    }
    v.sort();
    v
}

fn outcomes(p: &mut TailSamplingProcessor) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    p.take_outcomes(&mut |k, n| {
        m.insert(k, n);
    });
    m
}

#[test]
fn a_trace_is_held_until_decision_wait_then_released_whole() {
    let mut p = processor(&format!("decision_wait: 10s\n{ERRORS}"));
    let t0 = Instant::now();
    let mut out = Vec::new();
    // Trace 1 ends in an error, trace 2 does not; their spans come in two
    // requests, from two services, interleaved.
    p.process_at(batch(vec![("api", "fastapi", vec![span(1, 1, false), span(2, 1, false)])]), t0, &mut out);
    assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(10)));
    p.process_at(
        batch(vec![
            ("worker", "celery", vec![span(2, 2, false), span(1, 2, true)]),
            ("api", "httpx", vec![span(1, 3, false)]),
        ]),
        t0 + Duration::from_secs(5),
        &mut out,
    );
    assert!(out.is_empty(), "nothing leaves before the decision");
    p.on_deadline(t0 + Duration::from_millis(9_999), &mut out);
    assert!(out.is_empty(), "nothing leaves before decision_wait");
    assert_eq!(p.pending(), 2);
    p.on_deadline(t0 + Duration::from_secs(10), &mut out);
    assert_eq!(names(&out), ["api/fastapi/t1 s1", "api/httpx/t1 s3", "worker/celery/t1 s2"]);
    // Each incoming resource stays one resource out, with its scope.
    let Batch::Traces(rs) = &out[0] else { panic!() };
    assert_eq!(rs.len(), 3);
    assert_eq!(p.deadline(), None);
    assert_eq!(p.counts(), Counts { sampled: 3, not_sampled: 2, ..Default::default() });
    let o = outcomes(&mut p);
    assert_eq!((o["sampled"], o["not_sampled"], o["late_sampled"]), (3, 2, 0));
    assert_eq!(outcomes(&mut p)["sampled"], 0, "reported once");
}

#[test]
fn late_spans_follow_the_remembered_decision() {
    // Without decision caches the decided trace keeps its slot (the Collector's
    // "scenario 1"): late spans follow it until the slot is reused.
    let mut p = processor(&format!("decision_wait: 1s\n{ERRORS}"));
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.process_at(batch(vec![("api", "s", vec![span(1, 1, true), span(2, 1, false)])]), t0, &mut out);
    p.on_deadline(t0 + Duration::from_secs(1), &mut out);
    assert_eq!(names(&out), ["api/s/t1 s1"]);
    out.clear();
    p.process_at(
        batch(vec![("api", "s", vec![span(1, 2, false), span(2, 2, true)])]),
        t0 + Duration::from_secs(2),
        &mut out,
    );
    assert_eq!(
        names(&out),
        ["api/s/t1 s2"],
        "the late span of the kept trace passes at once, the other is dropped"
    );
    assert_eq!((p.counts().late_sampled, p.counts().late_dropped), (1, 1));
    assert_eq!(p.deadline(), None, "no new window was opened");

    // With caches: the decision outlives the slot, until the cache forgets it.
    let mut p = processor(&format!(
        "decision_wait: 1s\ndecision_cache: {{sampled_cache_size: 1, non_sampled_cache_size: 1}}\n{ERRORS}"
    ));
    let mut out = Vec::new();
    p.process_at(batch(vec![("api", "s", vec![span(1, 1, true), span(2, 1, false)])]), t0, &mut out);
    p.on_deadline(t0 + Duration::from_secs(1), &mut out);
    assert_eq!(p.index.len(), 0, "decided traces leave the table when cached");
    out.clear();
    p.process_at(
        batch(vec![("api", "s", vec![span(1, 2, false), span(2, 2, true)])]),
        t0 + Duration::from_secs(2),
        &mut out,
    );
    assert_eq!(names(&out), ["api/s/t1 s2"]);
    // Trace 3 is sampled and pushes trace 1 out of the one-entry cache: a
    // later span of trace 1 starts a new window.
    p.process_at(batch(vec![("api", "s", vec![span(3, 1, true)])]), t0 + Duration::from_secs(3), &mut out);
    p.on_deadline(t0 + Duration::from_secs(4), &mut out);
    out.clear();
    p.process_at(batch(vec![("api", "s", vec![span(1, 3, true)])]), t0 + Duration::from_secs(5), &mut out);
    assert!(out.is_empty());
    assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(6)), "a new window for trace 1");
    p.on_deadline(t0 + Duration::from_secs(6), &mut out);
    assert_eq!(names(&out), ["api/s/t1 s3"]);
}

#[test]
fn at_num_traces_the_oldest_trace_is_decided_early() {
    let mut p =
        processor("decision_wait: 30s\nnum_traces: 2\npolicies: [{name: all, type: always_sample}]\n");
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.process_at(batch(vec![("api", "s", vec![span(1, 1, false), span(1, 2, false)])]), t0, &mut out);
    p.process_at(batch(vec![("api", "s", vec![span(2, 1, false)])]), t0, &mut out);
    assert!(out.is_empty());
    p.process_at(batch(vec![("api", "s", vec![span(3, 1, false)])]), t0, &mut out);
    assert_eq!(names(&out), ["api/s/t1 s1", "api/s/t1 s2"], "trace 1 decided and released, not dropped");
    assert_eq!(p.counts(), Counts { sampled: 2, decided_early: 2, ..Default::default() });
    assert_eq!(p.pending(), 2);
    // A span of the evicted trace starts a new trace, evicting trace 2.
    out.clear();
    p.process_at(batch(vec![("api", "s", vec![span(1, 3, false)])]), t0, &mut out);
    assert_eq!(names(&out), ["api/s/t2 s1"]);
    assert_eq!(outcomes(&mut p)["decided_early"], 3);

    // A decided trace remembered in its slot is forgotten before a pending one is decided early.
    let mut p = processor(&format!("decision_wait: 1s\nnum_traces: 2\n{ERRORS}"));
    let mut out = Vec::new();
    p.process_at(batch(vec![("api", "s", vec![span(1, 1, false)])]), t0, &mut out);
    p.on_deadline(t0 + Duration::from_secs(1), &mut out);
    p.process_at(batch(vec![("api", "s", vec![span(2, 1, false)])]), t0 + Duration::from_secs(2), &mut out);
    p.process_at(batch(vec![("api", "s", vec![span(3, 1, false)])]), t0 + Duration::from_secs(2), &mut out);
    assert_eq!(p.counts().decided_early, 0);
    assert_eq!(p.pending(), 2);
}

#[test]
fn flush_decides_every_held_trace() {
    let mut p = processor(&format!("decision_wait: 1h\n{ERRORS}"));
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.process_at(
        batch(vec![(
            "api",
            "s",
            vec![span(1, 1, true), span(2, 1, false), span(3, 1, false), span(3, 2, true)],
        )]),
        t0,
        &mut out,
    );
    p.flush(&mut out);
    assert_eq!(names(&out), ["api/s/t1 s1", "api/s/t3 s1", "api/s/t3 s2"]);
    assert_eq!(p.pending(), 0);
    assert_eq!(p.deadline(), None);
    assert_eq!(p.counts(), Counts { sampled: 3, not_sampled: 1, ..Default::default() });
}

#[test]
fn many_traces_over_time_stay_bounded() {
    // 10,000 traces, 3 spans each, one new trace per millisecond with a 1 s
    // wait: at most num_traces are ever held, and everything is accounted for.
    let mut p = processor(
        "decision_wait: 1s\nnum_traces: 500\npolicies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 50}}]\n",
    );
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..10_000u32 {
        let now = t0 + Duration::from_millis(u64::from(i));
        let id = |t: u32| [t.to_be_bytes(), (t * 7).to_be_bytes(), [1, 2, 3, 4], [5, 6, 7, 8]].concat();
        let spans =
            (0..3).map(|n| Span { trace_id: id(i), name: format!("{n}"), ..Default::default() }).collect();
        p.process_at(batch(vec![("api", "s", spans)]), now, &mut out);
        if p.deadline().is_some_and(|d| d <= now) {
            p.on_deadline(now, &mut out);
        }
        assert!(p.index.len() <= 500);
        assert!(p.order.len() <= 2 * 500 + 1024);
    }
    p.flush(&mut out);
    let c = p.counts();
    assert_eq!(c.sampled + c.not_sampled, 30_000);
    assert_eq!(out.iter().map(Batch::item_count).sum::<usize>() as u64, c.sampled);
    assert!((13_500..16_500).contains(&c.sampled), "{c:?}");
}
