//! The interop set every SDK client sends (3 spans, a counter, a histogram,
//! 2 log records) and the one check of what must arrive, shared by the Rust,
//! Python and JavaScript client tests.

use serde_json::Value;

/// Every item of `kind` ("resourceSpans" …) across the file, with its resource.
pub fn items<'a>(
    lines: &'a [Value],
    kind: &str,
    scope_kind: &str,
    item: &str,
) -> Vec<(&'a Value, &'a Value)> {
    let mut out = Vec::new();
    for l in lines {
        for r in l[kind].as_array().into_iter().flatten() {
            for s in r[scope_kind].as_array().into_iter().flatten() {
                for i in s[item].as_array().into_iter().flatten() {
                    out.push((&r["resource"], i));
                }
            }
        }
    }
    out
}

pub fn attr<'a>(item: &'a Value, key: &str) -> &'a Value {
    item["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map_or(&Value::Null, |kv| &kv["value"])
}

/// Asserts `lines` (a `file` exporter's output) hold exactly the interop set
/// sent by `service`. `exact_big_int`: the client can send an int64 above
/// 2^53 (JavaScript numbers cannot).
pub fn check_interop_set(lines: &[Value], service: &str, exact_big_int: bool) {
    let spans = items(lines, "resourceSpans", "scopeSpans", "spans");
    assert_eq!(spans.len(), 3, "{lines:?}");
    for (res, _) in &spans {
        assert_eq!(attr(res, "service.name")["stringValue"], service);
    }
    let by_name = |n: &str| {
        spans.iter().find(|(_, s)| s["name"] == n).map(|(_, s)| *s).unwrap_or_else(|| panic!("no span {n}"))
    };
    let root = by_name("POST /api/chat");
    assert_eq!(root["kind"], 2, "SERVER");
    assert_eq!(attr(root, "http.route")["stringValue"], "/api/chat");
    assert_eq!(attr(root, "http.response.status_code")["intValue"], "200");
    if exact_big_int {
        assert_eq!(attr(root, "big.int")["intValue"], "9007199254740993", "int64 above 2^53 is exact");
    }
    assert_eq!(attr(root, "ratio")["doubleValue"], 0.25);
    assert_eq!(attr(root, "cached")["boolValue"], true);
    assert_eq!(root["events"][0]["name"], "cache miss");
    let llm = by_name("chat grok-4");
    assert_eq!(llm["kind"], 3, "CLIENT");
    assert_eq!(llm["parentSpanId"], root["spanId"]);
    assert_eq!(llm["traceId"], root["traceId"]);
    assert_eq!(llm["status"]["code"], 2);
    assert_eq!(llm["status"]["message"], "upstream timeout");
    assert_eq!(attr(llm, "gen_ai.usage.input_tokens")["intValue"], "1234");
    assert_eq!(by_name("rag.search")["parentSpanId"], root["spanId"]);

    let metrics = items(lines, "resourceMetrics", "scopeMetrics", "metrics");
    let metric = |n: &str| {
        metrics
            .iter()
            .find(|(_, m)| m["name"] == n)
            .map(|(_, m)| *m)
            .unwrap_or_else(|| panic!("no metric {n}"))
    };
    let counter = metric("interop.requests");
    // JavaScript counters are doubles; the others send integers (as JSON strings).
    let point = &counter["sum"]["dataPoints"][0];
    let value =
        point["asInt"].as_str().and_then(|s| s.parse::<f64>().ok()).or_else(|| point["asDouble"].as_f64());
    assert_eq!(value, Some(5.0), "{point}");
    assert_eq!(counter["sum"]["isMonotonic"], true);
    let hist = metric("interop.latency");
    assert_eq!(hist["unit"], "s");
    assert_eq!(hist["histogram"]["dataPoints"][0]["count"], "3");
    let sum = hist["histogram"]["dataPoints"][0]["sum"].as_f64().unwrap_or(f64::NAN);
    assert!((sum - 0.7).abs() < 1e-9, "histogram sum {sum}");

    let logs = items(lines, "resourceLogs", "scopeLogs", "logRecords");
    // Each record may travel in its own request (the JavaScript SDK's simple
    // processor sends them concurrently), so arrival order is not the SDK's.
    let mut bodies: Vec<&str> = logs.iter().filter_map(|(_, l)| l["body"]["stringValue"].as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, vec!["hello", "world"]);
    let world = logs
        .iter()
        .find(|(_, l)| l["body"]["stringValue"] == "world")
        .map(|(_, l)| *l)
        .unwrap_or(&Value::Null);
    assert_eq!(world["severityNumber"], 17);
    assert_eq!(world["severityText"], "ERROR");
    for (res, _) in logs {
        assert_eq!(attr(res, "service.name")["stringValue"], service);
    }
}
