//! Every class of config error `magpie validate` reports: each names the
//! file, line and component path, with a fix where one is obvious.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_core::config::ConfigError;
use magpie_tests::{parse, parse_with_env};

/// Parses `yaml` and asserts that among the problems there is one at `line`
/// whose rendering contains every fragment.
fn check(yaml: &str, expected: &[(u32, &[&str])]) -> Vec<ConfigError> {
    let problems = match parse(yaml) {
        Ok(c) => c.warnings,
        Err(p) => p,
    };
    for (line, fragments) in expected {
        let found = problems.iter().any(|p| {
            let text = p.to_string();
            p.location.as_ref().map(|l| l.line) == Some(*line) && fragments.iter().all(|f| text.contains(f))
        });
        assert!(found, "no problem at line {line} containing {fragments:?}; got:\n{}", render(&problems));
    }
    problems
}

fn render(problems: &[ConfigError]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}

const TAIL: &str = "service:\n  pipelines:\n    traces: {receivers: [test_source], exporters: [debug]}\n";

fn with_basics(head: &str) -> String {
    format!("receivers:\n  test_source: {{name: x}}\nexporters:\n  debug:\n{head}{TAIL}")
}

#[test]
fn a_valid_config_has_no_problems() {
    let c = parse(&with_basics("")).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.pipelines.len(), 1);
}

#[test]
fn yaml_syntax_error() {
    let p = check(
        "receivers:\n  otlp: {\n  bad\n",
        &[(2, &["test.yaml:2:9: error: invalid YAML: unclosed bracket"])],
    );
    assert_eq!(p.len(), 1, "{}", render(&p));
}

#[test]
fn unknown_top_level_key() {
    check(
        &with_basics("recievers: {}\n"),
        &[(5, &["unknown top-level key `recievers`", "did you mean `receivers`?"])],
    );
}

#[test]
fn unknown_component_type() {
    check(
        &with_basics("processors:\n  bacth: {}\n"),
        &[(6, &["processors.bacth", "unknown processor type `bacth`", "did you mean `batch`?"])],
    );
    check(
        &with_basics("connectors:\n  zzz: {}\n"),
        &[(6, &["unknown connector type `zzz`", "known connector types: alerts, forward"])],
    );
}

#[test]
fn unknown_field_in_a_component() {
    check(
        &with_basics("processors:\n  batch:\n    send_batch_sise: 10\n"),
        &[(7, &["test.yaml:7:5", "processors.batch.send_batch_sise", "did you mean `send_batch_size`?"])],
    );
    // Nested settings are checked too.
    check(
        "receivers: {test_source: {name: x}}\nexporters:\n  file:\n    path: out.jsonl\n    rotation:\n      max_mb: 3\n"
            .to_string()
            .as_str()
            .to_owned()
            .add("service: {pipelines: {logs: {receivers: [test_source], exporters: [file]}}}\n")
            .as_str(),
        &[(6, &["exporters.file.rotation.max_mb", "unknown field `max_mb`"])],
    );
}

trait Add {
    fn add(self, s: &str) -> String;
}
impl Add for String {
    fn add(mut self, s: &str) -> String {
        self.push_str(s);
        self
    }
}

#[test]
fn wrong_value_type() {
    check(
        &with_basics("processors:\n  batch:\n    send_batch_size: [1]\n"),
        &[(7, &["processors.batch.send_batch_size", "expected a non-negative integer, found a list"])],
    );
    check(
        &with_basics("processors:\n  batch:\n    send_batch_size: -4\n"),
        &[(7, &["send_batch_size", "-4 is out of range"])],
    );
}

#[test]
fn bad_duration() {
    check(
        &with_basics("processors:\n  batch:\n    timeout: 5 parsecs\n"),
        &[(7, &["processors.batch.timeout", "invalid duration `5 parsecs`", "e.g. 500ms, 10s"])],
    );
    check(
        "service:\n  shutdown_timeout: soon\n  pipelines: {}\n",
        &[(2, &["service.shutdown_timeout", "invalid duration `soon`"])],
    );
}

#[test]
fn pipeline_names_an_undeclared_component() {
    check(
        "receivers: {test_source: {name: x}}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    traces:\n      receivers: [test_sorce]\n      exporters: [debug, debug/2]\n",
        &[
            (
                6,
                &[
                    "service.pipelines.traces.receivers[0]",
                    "receiver `test_sorce` is not declared",
                    "did you mean `test_source`?",
                ],
            ),
            (
                7,
                &[
                    "service.pipelines.traces.exporters[1]",
                    "exporter `debug/2` is not declared under exporters or connectors",
                ],
            ),
        ],
    );
}

#[test]
fn pipeline_without_receivers_or_exporters() {
    check(
        "receivers: {test_source: {name: x}}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    traces:\n      exporters: [debug]\n    logs:\n      receivers: [test_source]\n",
        &[
            (5, &["service.pipelines.traces", "pipeline has no receivers"]),
            (7, &["service.pipelines.logs", "pipeline has no exporters"]),
        ],
    );
}

#[test]
fn unused_component_is_a_warning() {
    let c = parse(&with_basics("processors:\n  batch: {}\n")).expect("warnings do not fail validation");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = c.warnings[0].to_string();
    assert!(
        w.contains(
            "test.yaml:6:3: warning: processors.batch: processor `batch` is declared but no pipeline uses it"
        ),
        "{w}"
    );
}

#[test]
fn unset_env_var_without_default() {
    let yaml = "receivers: {test_source: {name: x}}\nexporters:\n  file:\n    path: ${env:MAGPIE_TEST_OUT}\n  debug:\n    verbosity: ${env:VERB:-normal}\nservice: {pipelines: {logs: {receivers: [test_source], exporters: [file, debug]}}}\n";
    let p = parse(yaml).unwrap_err();
    assert!(
        p.iter().any(|e| e.location.as_ref().map(|l| l.line) == Some(4)
            && e.to_string()
                .contains("exporters.file.path: environment variable MAGPIE_TEST_OUT is not set")),
        "{}",
        render(&p)
    );
    let c = parse_with_env(yaml, &[("MAGPIE_TEST_OUT", "/tmp/x.jsonl")]).unwrap();
    assert!(c.to_redacted_yaml().contains("path: /tmp/x.jsonl"));
    assert!(c.to_redacted_yaml().contains("verbosity: normal"));
}

#[test]
fn connector_must_be_exporter_and_receiver() {
    check(
        "receivers: {test_source: {name: x}}\nexporters: {debug: {}}\nconnectors:\n  forward: {}\nservice:\n  pipelines:\n    traces: {receivers: [test_source], exporters: [forward, debug]}\n",
        &[(4, &["connectors.forward", "used as an exporter but no pipeline receives from it"])],
    );
}

#[test]
fn connector_routes_must_match_signals() {
    check(
        "receivers: {test_source: {name: x}}\nexporters: {debug: {}}\nconnectors: {forward: {}}\nservice:\n  pipelines:\n    traces: {receivers: [test_source], exporters: [forward]}\n    logs: {receivers: [forward], exporters: [debug]}\n",
        &[
            (6, &["connector `forward` cannot carry traces"]),
            (7, &["connector `forward` cannot produce logs"]),
        ],
    );
}

#[test]
fn pipeline_cycle_through_connectors() {
    check(
        "receivers: {test_source: {name: x}}\nexporters: {debug: {}}\nconnectors: {forward: {}, forward/back: {}}\nservice:\n  pipelines:\n    traces/a: {receivers: [test_source, forward/back], exporters: [forward, debug]}\n    traces/b: {receivers: [forward], exporters: [forward/back]}\n",
        &[(
            6,
            &[
                "pipelines form a cycle through connectors: traces/a → forward → traces/b → forward/back → traces/a",
            ],
        )],
    );
}

#[test]
fn invalid_log_level() {
    check(
        "receivers: {test_source: {name: x}}\nexporters: {debug: {}}\nservice:\n  telemetry:\n    logs: {level: \"info,[\"}\n  pipelines:\n    traces: {receivers: [test_source], exporters: [debug]}\n",
        &[(5, &["service.telemetry.logs.level", "invalid log level"])],
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let p = parse("receivers:\n  nope: {}\nprocessors:\n  batch: {timeout: x}\nexporters:\n  debug: {verbosity: loud}\nservice:\n  pipelines:\n    spans: {}\n").unwrap_err();
    let errors: Vec<u32> =
        p.iter().filter(|e| e.is_error()).filter_map(|e| e.location.as_ref().map(|l| l.line)).collect();
    for line in [2, 4, 6, 9] {
        assert!(errors.contains(&line), "missing an error at line {line}:\n{}", render(&p));
    }
}

#[test]
fn merged_files_keep_their_own_locations() {
    use magpie::config::Source;
    let a = Source { name: "base.yaml".into(), text: with_basics("") };
    let b =
        Source { name: "override.yaml".into(), text: "exporters:\n  debug:\n    verbosity: chatty\n".into() };
    let p = magpie::config::parse(&[a, b], &|_| None).unwrap_err();
    assert!(
        p.iter().any(|e| e
            .to_string()
            .starts_with("override.yaml:3:16: error: exporters.debug.verbosity: unknown value `chatty`")),
        "{}",
        render(&p)
    );
}

#[test]
fn component_in_a_pipeline_of_a_signal_it_does_not_handle() {
    check(
        "receivers: {hostmetrics: {}}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    traces:\n      receivers: [hostmetrics]\n      exporters: [debug]\n",
        &[(
            6,
            &[
                "service.pipelines.traces.receivers[0]",
                "receiver `hostmetrics` does not handle traces (it handles: metrics)",
            ],
        )],
    );
}

#[test]
fn duplicate_listen_addresses() {
    check(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: 127.0.0.1:4317}\n      http: {endpoint: 0.0.0.0:4317}\n  otlp/2:\n    protocols:\n      http: {endpoint: 127.0.0.1:8888}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp, otlp/2], exporters: [debug]}\n",
        &[
            (
                5,
                &[
                    "receivers.otlp.protocols.http.endpoint",
                    "listen address 0.0.0.0:4317 is also used by receivers.otlp.protocols.grpc.endpoint",
                ],
            ),
            (
                8,
                &[
                    "receivers.otlp/2.protocols.http.endpoint",
                    "is also used by service.telemetry.metrics.address (its default)",
                ],
            ),
        ],
    );
}

#[test]
fn llm_cost_prices_and_settings() {
    let traces = "service:\n  pipelines:\n    traces: {receivers: [test_source], processors: [llm_cost], exporters: [debug]}\n";
    let yaml = |processor: &str| {
        format!(
            "receivers:\n  test_source: {{name: x}}\nexporters:\n  debug:\nprocessors:\n  llm_cost:\n{processor}{traces}"
        )
    };
    check(
        &yaml("    prices:\n      grok-4:\n        input: -3\n        output: 15\n"),
        &[(9, &["test.yaml:9:16", "processors.llm_cost.prices.grok-4.input", "-3 is not a price"])],
    );
    check(
        &yaml("    prices:\n      \"\": {input: 1, output: 2}\n"),
        &[(8, &["processors.llm_cost.prices.", "a model name must not be empty"])],
    );
    check(
        &yaml("    overwite: true\n"),
        &[(7, &["processors.llm_cost.overwite", "did you mean `overwrite`?"])],
    );
    check(
        &yaml("    builtin_prices: false\n"),
        &[(7, &["processors.llm_cost: prices: builtin_prices is false and no prices are given"])],
    );
    // It prices spans, nothing else.
    check(
        "receivers: {hostmetrics: {}}\nprocessors: {llm_cost: {}}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    metrics: {receivers: [hostmetrics], processors: [llm_cost], exporters: [debug]}\n",
        &[(6, &["processor `llm_cost` does not handle metrics (it handles: traces)"])],
    );
}

#[test]
fn probabilistic_sampler_settings() {
    let traces = "service:\n  pipelines:\n    traces: {receivers: [test_source], processors: [probabilistic_sampler], exporters: [debug]}\n";
    let yaml = |processor: &str| {
        format!(
            "receivers:\n  test_source: {{name: x}}\nexporters:\n  debug:\nprocessors:\n  probabilistic_sampler:\n{processor}{traces}"
        )
    };
    check(
        &yaml("    sampling_percentage: 150\n"),
        &[(
            7,
            &[
                "processors.probabilistic_sampler",
                "sampling_percentage: 150 is not a percentage: give 0 to 100",
            ],
        )],
    );
    check(
        &yaml("    sampling_percentage: 10\n    mode: proportionl\n"),
        &[(8, &["test.yaml:8:11", "processors.probabilistic_sampler.mode", "did you mean `proportional`?"])],
    );
    check(&yaml("    hash_seed: 7\n"), &[(7, &["missing required field `sampling_percentage`"])]);
    // It samples traces and logs, not metrics.
    check(
        "receivers: {hostmetrics: {}}\nprocessors: {probabilistic_sampler: {sampling_percentage: 10}}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    metrics: {receivers: [hostmetrics], processors: [probabilistic_sampler], exporters: [debug]}\n",
        &[(6, &["processor `probabilistic_sampler` does not handle metrics (it handles: traces,logs)"])],
    );
}

#[test]
fn tail_sampling_settings() {
    let traces = "service:\n  pipelines:\n    traces: {receivers: [test_source], processors: [tail_sampling], exporters: [debug]}\n";
    let yaml = |processor: &str| {
        format!(
            "receivers:\n  test_source: {{name: x}}\nexporters:\n  debug:\nprocessors:\n  tail_sampling:\n{processor}{traces}"
        )
    };
    let ok =
        "    policies:\n      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n";
    let c = parse(&yaml(ok)).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // A typo in a policy's settings key, at the key.
    check(
        &yaml(
            "    policies:\n      - name: s\n        type: string_attribute\n        string_atribute: {key: k, values: [v]}\n",
        ),
        &[(
            10,
            &[
                "test.yaml:10:9",
                "processors.tail_sampling.policies[0].string_atribute",
                "did you mean `string_attribute`?",
            ],
        )],
    );
    // An unknown type, at its value.
    check(
        &yaml("    policies:\n      - {name: slow, type: latancy, latency: {threshold_ms: 100}}\n"),
        &[(
            8,
            &[
                "processors.tail_sampling.policies[0].type",
                "unknown value `latancy`, did you mean `latency`?",
            ],
        )],
    );
    // ottl_condition is refused with a reason.
    check(
        &yaml("    policies:\n      - name: o\n        type: ottl_condition\n"),
        &[(9, &["policies[0].type", "`ottl_condition` is not supported"])],
    );
    // A wrong type and a bad duration.
    check(
        &yaml(&format!("    num_traces: lots\n{ok}")),
        &[(7, &["processors.tail_sampling.num_traces", "expected a non-negative integer"])],
    );
    check(
        &yaml(&format!("    decision_wait: soon\n{ok}")),
        &[(7, &["decision_wait", "invalid duration `soon`"])],
    );
    // A bad regex, at the block that holds it.
    check(
        &yaml(
            "    policies:\n      - name: r\n        type: string_attribute\n        string_attribute: {key: url.path, values: [\"/health(\"], enabled_regex_matching: true}\n",
        ),
        &[(10, &["policies[0].string_attribute", "values[0]: invalid regular expression `/health(`"])],
    );
    // Missing fields and a bad status code.
    check(
        &yaml(
            "    policies:\n      - {name: n, type: numeric_attribute, numeric_attribute: {min_value: 400}}\n",
        ),
        &[(8, &["policies[0].numeric_attribute", "missing required field `key`"])],
    );
    check(
        &yaml("    decision_wait: 1s\n"),
        &[(7, &["processors.tail_sampling", "missing required field `policies`"])],
    );
    check(
        &yaml("    policies:\n      - {name: e, type: status_code, status_code: {status_codes: [FATAL]}}\n"),
        &[(8, &["status_codes[0]", "unknown value `FATAL`, expected one of: UNSET, OK, ERROR"])],
    );
    // Settings of another type than the policy's.
    check(
        &yaml("    policies:\n      - {name: e, type: latency, status_code: {status_codes: [ERROR]}}\n"),
        &[(8, &["policies[0]", "policy `e` is of type `latency`, but has `status_code` settings"])],
    );
    // and/drop take plain policies only.
    check(
        &yaml(
            "    policies:\n      - name: a\n        type: and\n        and:\n          and_sub_policy:\n            - {name: inner, type: composite, composite: {max_total_spans_per_second: 1, composite_sub_policy: [{name: x, type: always_sample}]}}\n",
        ),
        &[(12, &["and_sub_policy[0]", "type `composite` cannot be used under and_sub_policy"])],
    );
    // It samples traces, not logs.
    check(
        "receivers: {otlp: {}}\nprocessors: {tail_sampling: {policies: [{name: all, type: always_sample}]}}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    logs: {receivers: [otlp], processors: [tail_sampling], exporters: [debug]}\n",
        &[(6, &["processor `tail_sampling` does not handle logs (it handles: traces)"])],
    );
}

#[test]
fn alerts_connector_and_webhook_settings() {
    let yaml = |rule: &str| {
        format!(
            "receivers: {{hostmetrics: {{}}}}\nconnectors:\n  alerts:\n    rules:\n      - name: HighLoad\n        metric: system.cpu.utilization\n        aggregation: avg\n{rule}exporters:\n  webhook: {{endpoint: \"http://127.0.0.1:9/hook\"}}\nservice:\n  pipelines:\n    metrics: {{receivers: [hostmetrics], exporters: [alerts]}}\n    alerts: {{receivers: [alerts], exporters: [webhook]}}\n"
        )
    };
    let ok = "        condition: gt\n        threshold: 0.9\n";
    let c = parse(&yaml(ok)).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    check(
        &yaml("        condition: above\n        threshold: 0.9\n"),
        &[(8, &["test.yaml:8:20", "connectors.alerts.rules", "condition", "unknown value `above`"])],
    );
    check(
        &yaml(&format!("{ok}        matchers: ['host.name =~ \"(web\"']\n")),
        &[(10, &["test.yaml:10:", "matchers", "bad regex", "unclosed group"])],
    );
    check(
        &yaml(&format!("{ok}        annotations: {{summary: 'load at {{{{ $valeu }}}}'}}\n")),
        &[(
            10,
            &["annotations.summary", "unknown variable `$valeu`", "$value, $threshold or $labels.<name>"],
        )],
    );
    check(
        "receivers: {hostmetrics: {}}\nconnectors:\n  alerts: {rules: []}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    metrics: {receivers: [hostmetrics], exporters: [alerts]}\n    alerts: {receivers: [alerts], exporters: [debug]}\n",
        &[(3, &["connectors.alerts", "at least one rule is needed"])],
    );
    // The webhook takes alerts only; the alerts connector turns metrics into alerts only.
    check(
        "receivers: {hostmetrics: {}}\nexporters: {webhook: {endpoint: \"http://127.0.0.1:9/hook\"}}\nservice:\n  pipelines:\n    metrics: {receivers: [hostmetrics], exporters: [webhook]}\n",
        &[(5, &["exporter `webhook` does not handle metrics (it handles: alerts)"])],
    );
    check(
        "receivers: {otlp: {}}\nconnectors:\n  alerts: {rules: [{name: A, metric: m, aggregation: avg, condition: gt, threshold: 1}]}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [alerts]}\n    alerts: {receivers: [alerts], exporters: [debug]}\n",
        &[(7, &["connector `alerts` cannot carry traces"])],
    );
    check(
        "receivers: {hostmetrics: {}}\nprocessors: {batch: {}}\nconnectors:\n  alerts: {rules: [{name: A, metric: m, aggregation: avg, condition: gt, threshold: 1}]}\nexporters: {debug: {}}\nservice:\n  pipelines:\n    metrics: {receivers: [hostmetrics], exporters: [alerts]}\n    alerts: {receivers: [alerts], processors: [batch], exporters: [debug]}\n",
        &[(9, &["processor `batch` does not handle alerts (it handles: traces,metrics,logs)"])],
    );
}

#[test]
fn slack_settings() {
    let yaml = |slack: &str, pipeline: &str| {
        format!(
            "receivers: {{hostmetrics: {{}}}}\nconnectors:\n  alerts: {{rules: [{{name: A, metric: m, aggregation: avg, condition: gt, threshold: 1}}]}}\nexporters:\n  slack/ops:\n{slack}service:\n  pipelines:\n    metrics: {{receivers: [hostmetrics], exporters: [alerts{pipeline}]}}\n    alerts: {{receivers: [alerts], exporters: [slack/ops]}}\n"
        )
    };
    let ok = "    webhook_url: https://hooks.slack.com/services/T0/B0/secret-token\n    channel: \"#ops\"\n";
    let c = parse(&yaml(ok, "")).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let p = check(
        &yaml("    channel: \"#ops\"\n", ""),
        &[(6, &["test.yaml:6:", "exporters.slack/ops", "missing required field `webhook_url`"])],
    );
    assert_eq!(p.len(), 1, "{}", render(&p));
    let p = check(
        &yaml("    webhook_url: hooks.slack.com/services/T0/B0/secret-token\n", ""),
        &[(6, &["exporters.slack/ops", "webhook_url must start with https://"])],
    );
    assert!(!render(&p).contains("secret-token"), "the URL is a secret: {}", render(&p));
    check(
        &yaml(ok, ", slack/ops"),
        &[(10, &["exporter `slack/ops` does not handle metrics (it handles: alerts)"])],
    );
}

#[test]
fn email_settings() {
    let yaml = |email: &str, pipeline: &str| {
        format!(
            "receivers: {{hostmetrics: {{}}}}\nconnectors:\n  alerts: {{rules: [{{name: A, metric: m, aggregation: avg, condition: gt, threshold: 1}}]}}\nexporters:\n  email/ops:\n{email}service:\n  pipelines:\n    metrics: {{receivers: [hostmetrics], exporters: [alerts{pipeline}]}}\n    alerts: {{receivers: [alerts], exporters: [email/ops]}}\n"
        )
    };
    let ok = "    smarthost: smtp.example.com:587\n    from: magpie@example.com\n    to: [ops@example.com]\n    username: magpie\n    password: hunter2-secret\n";
    let c = parse(&yaml(ok, "")).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let p = check(
        &yaml("    smarthost: smtp.example.com:587\n    from: magpie@example.com\n", ""),
        &[(6, &["test.yaml:6:", "exporters.email/ops", "missing required field `to`"])],
    );
    assert_eq!(p.len(), 1, "{}", render(&p));
    let p = check(
        &yaml(
            "    smarthost: smtp.example.com\n    from: magpie@example.com\n    to: [ops@example.com, not-an-address]\n    password: hunter2-secret\n",
            "",
        ),
        &[
            (6, &["exporters.email/ops", "to `not-an-address` is not an email address"]),
            (6, &["exporters.email/ops", "smarthost `smtp.example.com` must be host:port"]),
            (6, &["exporters.email/ops", "username and password go together"]),
        ],
    );
    assert!(!render(&p).contains("hunter2-secret"), "the password is a secret: {}", render(&p));
    check(
        &yaml(
            "    smarthost: smtp.example.com:465\n    tls: ssl\n    from: a@b.c\n    to: [ops@example.com]\n",
            "",
        ),
        &[(7, &["exporters.email/ops.tls", "unknown value `ssl`, expected one of: starttls, tls, none"])],
    );
    check(
        &yaml(ok, ", email/ops"),
        &[(13, &["exporter `email/ops` does not handle metrics (it handles: alerts)"])],
    );
}
