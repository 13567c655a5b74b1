//! The price table of `llm_cost`: the built-in list prices, and the lookup of
//! a model name in them.
//!
//! A name is looked up case-insensitively, without allocating, in this order:
//!
//! 1. the name exactly (`gpt-4o-2024-05-13` has a price of its own);
//! 2. a snapshot of a known name: the longest known name followed by `-` or
//!    `@` and only date, version or release tags (`claude-sonnet-4-20250514`,
//!    `claude-sonnet-4@20250514`, `grok-3-mini-beta`, `gpt-4o-2024-08-06`,
//!    `gemini-2.5-flash-preview-05-20`). The first tag after the name must be
//!    a number of at least three digits or one of `latest`, `preview`,
//!    `beta`, `exp`, `v<N>`, so `claude-opus-4-1-…` never falls back to
//!    `claude-opus-4`, nor `grok-4-fast-…` to `grok-4`, nor `gpt-4o-mini` to
//!    `gpt-4o`: a different family is never priced as another;
//! 3. steps 1 and 2 again without a routing prefix: what follows the last
//!    `/` (`openai/gpt-4o`, `models/gemini-2.5-pro`), or the last `.` before
//!    the first `-` (Bedrock's `us.anthropic.claude-sonnet-4-20250514-v1:0`);
//! 4. a configured wildcard, `name*`, the longest first.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The day the built-in prices were compiled from the vendors' public price
/// lists. Prices change: check them, and override or extend them under
/// `prices:`.
pub const BUILTIN_PRICES_DATE: &str = "2026-11-26";

/// USD per million tokens of one model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    /// Input tokens neither read from nor written to a prompt cache.
    pub input: f64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input: f64,
    /// Input tokens written to the provider's prompt cache (Anthropic bills
    /// these above the input price; elsewhere they cost the input price).
    pub cache_creation_input: f64,
    /// Output tokens, reasoning tokens included.
    pub output: f64,
}

impl Price {
    /// A model whose cache writes cost the input price.
    pub const fn new(input: f64, cached_input: f64, output: f64) -> Price {
        Price { input, cached_input, cache_creation_input: input, output }
    }

    /// A model that bills cache writes separately.
    pub const fn with_cache_writes(
        input: f64,
        cached_input: f64,
        cache_creation_input: f64,
        output: f64,
    ) -> Price {
        Price { input, cached_input, cache_creation_input, output }
    }
}

const fn p(input: f64, cached_input: f64, output: f64) -> Price {
    Price::new(input, cached_input, output)
}

const fn pw(input: f64, cached_input: f64, cache_writes: f64, output: f64) -> Price {
    Price::with_cache_writes(input, cached_input, cache_writes, output)
}

/// The built-in list prices in USD per million tokens, as compiled from the
/// vendors' price lists on [`BUILTIN_PRICES_DATE`] (standard tier, pay as you
/// go, prompts below any long-context threshold). Columns: input, cached input,
/// (cache writes,) output. Models whose price could not be confirmed are left
/// out. Users should check these and override them under `prices:`.
#[rustfmt::skip]
pub const BUILTIN: &[(&str, Price)] = &[
    // xAI (docs.x.ai, "Models and Pricing" and "Pricing"; no charge for cache writes).
    ("grok-4.3",                      p(1.25,  0.20,  2.50)),
    ("grok-4.20-0309-reasoning",      p(1.25,  0.20,  2.50)),
    ("grok-4.20-0309-non-reasoning",  p(1.25,  0.20,  2.50)),
    ("grok-4.20-multi-agent-0309",    p(1.25,  0.20,  2.50)),
    ("grok-4-1-fast-reasoning",       p(0.20,  0.05,  0.50)),
    ("grok-4-1-fast-non-reasoning",   p(0.20,  0.05,  0.50)),
    ("grok-4-fast-reasoning",         p(0.20,  0.05,  0.50)),
    ("grok-4-fast-non-reasoning",     p(0.20,  0.05,  0.50)),
    ("grok-4",                        p(3.00,  0.75,  15.00)),
    ("grok-3",                        p(3.00,  0.75,  15.00)),
    ("grok-3-fast",                   p(5.00,  1.25,  25.00)),
    ("grok-3-mini",                   p(0.30,  0.075, 0.50)),
    ("grok-3-mini-fast",              p(0.60,  0.15,  4.00)),
    // Anthropic (platform.claude.com, "Pricing"; cache writes at the 5-minute rate).
    ("claude-opus-4-8",               pw(5.00,  0.50, 6.25,  25.00)),
    ("claude-opus-4-7",               pw(5.00,  0.50, 6.25,  25.00)),
    ("claude-opus-4-6",               pw(5.00,  0.50, 6.25,  25.00)),
    ("claude-opus-4-5",               pw(5.00,  0.50, 6.25,  25.00)),
    ("claude-opus-4-1",               pw(15.00, 1.50, 18.75, 75.00)),
    ("claude-opus-4",                 pw(15.00, 1.50, 18.75, 75.00)),
    ("claude-opus-4-0",               pw(15.00, 1.50, 18.75, 75.00)),
    ("claude-sonnet-4-6",             pw(3.00,  0.30, 3.75,  15.00)),
    ("claude-sonnet-4-5",             pw(3.00,  0.30, 3.75,  15.00)),
    ("claude-sonnet-4",               pw(3.00,  0.30, 3.75,  15.00)),
    ("claude-sonnet-4-0",             pw(3.00,  0.30, 3.75,  15.00)),
    ("claude-3-7-sonnet",             pw(3.00,  0.30, 3.75,  15.00)),
    ("claude-haiku-4-5",              pw(1.00,  0.10, 1.25,  5.00)),
    ("claude-3-5-haiku",              pw(0.80,  0.08, 1.00,  4.00)),
    ("claude-3-opus",                 pw(15.00, 1.50, 18.75, 75.00)),
    ("claude-3-haiku",                pw(0.25,  0.03, 0.30,  1.25)),
    // OpenAI (openai.com API pricing).
    ("gpt-5",                         p(1.25,  0.125, 10.00)),
    ("gpt-5-mini",                    p(0.25,  0.025, 2.00)),
    ("gpt-5-nano",                    p(0.05,  0.005, 0.40)),
    ("gpt-4.1",                       p(2.00,  0.50,  8.00)),
    ("gpt-4.1-mini",                  p(0.40,  0.10,  1.60)),
    ("gpt-4.1-nano",                  p(0.10,  0.025, 0.40)),
    ("gpt-4o",                        p(2.50,  1.25,  10.00)),
    ("gpt-4o-2024-05-13",             p(5.00,  5.00,  15.00)),
    ("gpt-4o-mini",                   p(0.15,  0.075, 0.60)),
    ("o3",                            p(2.00,  0.50,  8.00)),
    ("o4-mini",                       p(1.10,  0.275, 4.40)),
    // Google (ai.google.dev, "Gemini Developer API pricing"; text input).
    ("gemini-2.5-pro",                p(1.25,  0.125, 10.00)),
    ("gemini-2.5-flash",              p(0.30,  0.03,  2.50)),
    ("gemini-2.5-flash-lite",         p(0.10,  0.01,  0.40)),
];

/// Prices by model name, built once when the processor starts.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    /// Names (lowercase), sorted bytewise, for exact and snapshot lookups.
    names: Vec<(Box<str>, Price)>,
    /// Wildcard prefixes (lowercase, without the `*`), longest first.
    wildcards: Vec<(Box<str>, Price)>,
}

/// A price found for a model, with the table entry that gave it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Found<'a> {
    /// The entry's name, lowercase (`name*` for a wildcard).
    pub entry: &'a str,
    pub price: Price,
}

impl PriceTable {
    /// The built-in prices (when `builtin`), then `overrides` replacing
    /// entries of the same name (case-insensitive) and adding new ones. A
    /// name ending in `*` is a wildcard.
    pub fn new<'a>(builtin: bool, overrides: impl IntoIterator<Item = (&'a str, Price)>) -> PriceTable {
        let mut all: BTreeMap<String, Price> = BTreeMap::new();
        if builtin {
            for (name, price) in BUILTIN {
                all.insert(name.to_ascii_lowercase(), *price);
            }
        }
        for (name, price) in overrides {
            all.insert(name.trim().to_ascii_lowercase(), price);
        }
        let mut table = PriceTable::default();
        for (name, price) in all {
            match name.strip_suffix('*') {
                Some(prefix) => table.wildcards.push((prefix.into(), price)),
                None => table.names.push((name.into(), price)),
            }
        }
        // BTreeMap order is bytewise, which is what `exact` searches by.
        table.wildcards.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        table
    }

    /// Entries in the table, wildcards included.
    pub fn len(&self) -> usize {
        self.names.len() + self.wildcards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The price of `model`, by the rules in the module documentation.
    pub fn lookup(&self, model: &str) -> Option<Found<'_>> {
        let model = model.trim();
        if model.is_empty() {
            return None;
        }
        let tail = routing_tail(model);
        let names = [Some(model), tail];
        names
            .iter()
            .flatten()
            .find_map(|name| self.exact(name).or_else(|| self.snapshot(name)))
            .or_else(|| names.iter().flatten().find_map(|name| self.wildcard(name)))
    }

    fn exact(&self, name: &str) -> Option<Found<'_>> {
        let i = self.names.binary_search_by(|(entry, _)| cmp_lowercase(entry, name)).ok()?;
        let (entry, price) = &self.names[i];
        Some(Found { entry, price: *price })
    }

    /// The longest known name that `name` is a snapshot of.
    fn snapshot(&self, name: &str) -> Option<Found<'_>> {
        let bytes = name.as_bytes();
        (1..bytes.len())
            .rev()
            .filter(|&i| matches!(bytes[i], b'-' | b'@'))
            .filter(|&i| is_snapshot_suffix(&name[i + 1..]))
            .find_map(|i| self.exact(&name[..i]))
    }

    fn wildcard(&self, name: &str) -> Option<Found<'_>> {
        self.wildcards
            .iter()
            .find(|(prefix, _)| {
                name.len() >= prefix.len()
                    && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            })
            .map(|(entry, price)| Found { entry, price: *price })
    }
}

/// Compares a lowercase table entry with `name`, ignoring ASCII case in `name`.
fn cmp_lowercase(entry: &str, name: &str) -> Ordering {
    entry.bytes().cmp(name.bytes().map(|b| b.to_ascii_lowercase()))
}

/// Whether `rest` (what follows a known name and its `-`/`@`) is only
/// snapshot tags: dates and numbers, `latest`, `preview`, `beta`, `exp`,
/// `v<N>`, separated by `-`, `@` or `:`. The first tag must not be a number
/// of one or two digits: that is a version of a different model
/// (`claude-opus-4-1`, `grok-4-1-fast`), not a snapshot.
fn is_snapshot_suffix(rest: &str) -> bool {
    rest.split(['-', '@', ':']).enumerate().all(|(i, tag)| {
        let number = !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit());
        if number {
            i > 0 || tag.len() >= 3
        } else {
            ["latest", "preview", "beta", "exp"].iter().any(|t| tag.eq_ignore_ascii_case(t))
                || (tag.len() > 1
                    && tag.as_bytes()[0].eq_ignore_ascii_case(&b'v')
                    && tag.bytes().skip(1).all(|b| b.is_ascii_digit()))
        }
    })
}

/// `model` without a routing prefix, if it has one: after the last `/`, then
/// after the last `.` that comes before the first `-`.
fn routing_tail(model: &str) -> Option<&str> {
    let after_slash = model.rfind('/').map_or(model, |i| &model[i + 1..]);
    let head_end = after_slash.find('-').unwrap_or(after_slash.len());
    let tail = after_slash[..head_end].rfind('.').map_or(after_slash, |i| &after_slash[i + 1..]);
    (tail.len() != model.len() && !tail.is_empty()).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> PriceTable {
        PriceTable::new(true, [])
    }

    /// `model` → the entry that prices it (`None`: no price).
    fn check(table: &PriceTable, cases: &[(&str, Option<&str>)]) {
        for (model, expected) in cases {
            let got = table.lookup(model).map(|f| f.entry);
            assert_eq!(got, *expected, "lookup({model:?})");
        }
    }

    #[test]
    fn awkward_model_names_never_panic() {
        let mut table = PriceTable::new(true, [("my-*", Price::new(1.0, 1.0, 1.0))]);
        for s in magpie_core::otlp::testdata::awkward_strings() {
            let _ = table.lookup(&s);
            let _ = table.lookup(&format!("claude-sonnet-4-{s}"));
            let _ = table.lookup(&format!("{s}/grok-4@{s}"));
        }
        table = PriceTable::new(false, []);
        assert!(table.lookup("grok-4").is_none());
    }

    #[test]
    fn exact_names_and_snapshots_of_known_names() {
        check(
            &builtin(),
            &[
                ("grok-4-1-fast-reasoning", Some("grok-4-1-fast-reasoning")),
                ("GROK-4-1-Fast-Reasoning", Some("grok-4-1-fast-reasoning")),
                ("  grok-3-mini ", Some("grok-3-mini")),
                ("grok-3-mini-beta", Some("grok-3-mini")),
                ("grok-3-mini-latest", Some("grok-3-mini")),
                ("grok-3-mini-fast-beta", Some("grok-3-mini-fast")),
                ("grok-3-beta", Some("grok-3")),
                ("grok-4-0709", Some("grok-4")),
                ("grok-4-latest", Some("grok-4")),
                ("claude-sonnet-4-20250514", Some("claude-sonnet-4")),
                ("claude-sonnet-4@20250514", Some("claude-sonnet-4")),
                ("claude-sonnet-4-5-20250929", Some("claude-sonnet-4-5")),
                ("claude-opus-4-1-20250805", Some("claude-opus-4-1")),
                ("claude-opus-4-5-20251101", Some("claude-opus-4-5")),
                ("claude-3-5-haiku-latest", Some("claude-3-5-haiku")),
                ("claude-3-haiku-20240307", Some("claude-3-haiku")),
                ("gpt-4o-2024-08-06", Some("gpt-4o")),
                ("gpt-4o-2024-05-13", Some("gpt-4o-2024-05-13")),
                ("gpt-4o-mini-2024-07-18", Some("gpt-4o-mini")),
                ("gpt-4.1-2025-04-14", Some("gpt-4.1")),
                ("gpt-4.1-nano-2025-04-14", Some("gpt-4.1-nano")),
                ("gpt-5-2025-08-07", Some("gpt-5")),
                ("o3-2025-04-16", Some("o3")),
                ("o4-mini-2025-04-16", Some("o4-mini")),
                ("gemini-2.5-flash-preview-05-20", Some("gemini-2.5-flash")),
                ("gemini-2.5-flash-lite-preview-06-17", Some("gemini-2.5-flash-lite")),
                ("gemini-2.5-pro-exp-03-25", Some("gemini-2.5-pro")),
            ],
        );
    }

    #[test]
    fn a_suffix_never_prices_a_different_family() {
        check(
            &builtin(),
            &[
                // A one- or two-digit version is another model, not a snapshot.
                ("claude-opus-4-9", None),
                ("claude-opus-4-9-20270101", None),
                ("claude-sonnet-4-7", None),
                ("grok-4-2-fast-reasoning", None),
                // Words that name another variant.
                ("grok-4-fast", None),
                ("grok-4-heavy", None),
                ("gpt-4o-audio-preview", None),
                ("gpt-5-chat-latest", None),
                ("o3-mini", None),
                ("o3-pro-2025-06-10", None),
                ("gemini-2.5-flash-image", None),
                // A dot continues the version.
                ("grok-4.5", None),
                ("gpt-5.1", None),
                ("gpt-4.1o", None),
                // Not a name boundary at all.
                ("grok-30", None),
                ("gpt-4oo", None),
                ("o3x", None),
                // Malformed suffixes.
                ("grok-4-", None),
                ("grok-4--0709", None),
                ("grok-4-v", None),
                ("", None),
                ("   ", None),
            ],
        );
    }

    #[test]
    fn routing_prefixes_are_looked_through() {
        check(
            &builtin(),
            &[
                ("openai/gpt-4o-mini", Some("gpt-4o-mini")),
                ("x-ai/grok-3-mini", Some("grok-3-mini")),
                ("models/gemini-2.5-pro", Some("gemini-2.5-pro")),
                ("publishers/google/models/gemini-2.5-flash", Some("gemini-2.5-flash")),
                ("anthropic.claude-3-haiku-20240307-v1:0", Some("claude-3-haiku")),
                ("us.anthropic.claude-sonnet-4-20250514-v1:0", Some("claude-sonnet-4")),
                ("openai/", None),
                ("meta.llama3-70b-instruct-v1:0", None),
            ],
        );
    }

    #[test]
    fn overrides_replace_and_extend_and_wildcards_come_last() {
        let table = PriceTable::new(
            true,
            [
                ("Grok-3-Mini", p(1.0, 0.5, 2.0)),
                ("my-finetune", p(9.0, 9.0, 9.0)),
                ("ft:gpt-4o-mini:acme*", p(0.3, 0.15, 1.2)),
                ("claude-*", p(7.0, 7.0, 7.0)),
                ("claude-opus-*", p(8.0, 8.0, 8.0)),
            ],
        );
        assert_eq!(
            table.lookup("grok-3-mini-beta").map(|f| f.price),
            Some(p(1.0, 0.5, 2.0)),
            "override wins"
        );
        assert_eq!(table.lookup("grok-3").map(|f| f.price), Some(p(3.0, 0.75, 15.0)), "others stay");
        check(
            &table,
            &[
                ("my-finetune-20260101", Some("my-finetune")),
                ("ft:gpt-4o-mini:acme:support:abc123", Some("ft:gpt-4o-mini:acme")),
                ("ft:gpt-4o-mini:other:x", None),
                // A known name (or its snapshot) is more specific than a wildcard.
                ("claude-sonnet-4-20250514", Some("claude-sonnet-4")),
                // Wildcards, longest first.
                ("claude-opus-9", Some("claude-opus-")),
                ("claude-sonnet-9", Some("claude-")),
            ],
        );
    }

    #[test]
    fn without_builtin_prices_only_the_configured_ones_exist() {
        let table = PriceTable::new(false, [("grok-3-mini", p(0.3, 0.075, 0.5))]);
        assert_eq!(table.len(), 1);
        check(&table, &[("grok-3-mini-beta", Some("grok-3-mini")), ("grok-3", None), ("gpt-4o", None)]);
        let everything = PriceTable::new(false, [("*", p(1.0, 1.0, 1.0))]);
        check(&everything, &[("anything-at-all", Some("")), ("x", Some(""))]);
    }

    #[test]
    fn the_builtin_table_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for (name, price) in BUILTIN {
            assert_eq!(*name, name.to_ascii_lowercase(), "{name}: lowercase");
            assert!(!name.contains('*') && !name.trim().is_empty(), "{name}");
            assert!(seen.insert(*name), "{name} listed twice");
            for v in [price.input, price.cached_input, price.cache_creation_input, price.output] {
                assert!(v.is_finite() && v >= 0.0, "{name}: {price:?}");
            }
            assert!(price.cached_input <= price.input, "{name}: cached input costs more than input");
            assert!(price.input <= price.output, "{name}: input costs more than output");
            // Every entry prices itself, not a shorter name.
            assert_eq!(builtin().lookup(name).map(|f| f.entry), Some(*name));
        }
        assert_eq!(builtin().len(), BUILTIN.len());
    }

    /// The README's price table, by model name.
    fn readme_prices() -> BTreeMap<String, Price> {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("### Built-in prices").expect("a Built-in prices section")..];
        let mut out = BTreeMap::new();
        for row in section.lines().take_while(|l| !l.starts_with("## ")).filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let n = |i: usize| cells[i].parse::<f64>().unwrap_or_else(|e| panic!("{row}: {e}"));
            let price = pw(n(1), n(2), n(3), n(4));
            for name in cells[0].split(", ") {
                // `grok-4` (`grok-4-0709`): the parenthesis names a snapshot, not an entry.
                let name = name.split(" (").next().unwrap_or(name).trim_matches('`');
                assert!(out.insert(name.to_string(), price).is_none(), "{name} twice in the README");
            }
        }
        out
    }

    #[test]
    fn the_readme_lists_every_builtin_price_and_its_date() {
        let readme = readme_prices();
        let table: BTreeMap<String, Price> = BUILTIN.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        assert_eq!(readme, table, "processors/README.md and BUILTIN differ");
        assert!(include_str!("../../README.md").contains(&format!("compiled on **{BUILTIN_PRICES_DATE}**")));
    }

    #[test]
    fn the_price_of_the_reference_model() {
        // The chatbot this agent was built for calls grok-4-1-fast-reasoning.
        let found = builtin().lookup("grok-4-1-fast-reasoning").map(|f| f.price);
        assert_eq!(found, Some(p(0.20, 0.05, 0.50)));
    }
}
