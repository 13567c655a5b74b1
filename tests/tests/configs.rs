//! Every config shipped in `configs/` validates, so examples cannot rot. The
//! built-in default is checked as the binary embeds it.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie::config::{self, Source};

fn configs_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// Secrets and endpoints referenced as `${env:NAME}` get a stand-in value.
fn env(name: &str) -> Option<String> {
    Some(format!("stand-in-for-{name}"))
}

#[test]
fn every_shipped_config_validates_without_warnings() {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(configs_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match config::parse(&[Source { name: name.clone(), text }], &env) {
            Ok(c) => assert!(c.warnings.is_empty(), "{name}: {:?}", c.warnings),
            Err(problems) => panic!(
                "{name} does not validate:\n{}",
                problems.iter().map(|p| format!("  {p}\n")).collect::<String>()
            ),
        }
        checked += 1;
    }
    assert!(checked >= 1, "no configs found");
}

#[test]
fn the_embedded_default_is_the_shipped_file_and_validates() {
    let shipped = std::fs::read_to_string(configs_dir().join("default.yaml")).unwrap();
    assert_eq!(config::DEFAULT_CONFIG, shipped);
    let c = config::load(&[]).unwrap_or_else(|p| panic!("{p:?}"));
    assert!(!c.pipelines.is_empty());
}

#[test]
fn the_readme_example_config_validates() {
    let readme = std::fs::read_to_string(configs_dir().join("../README.md")).unwrap();
    let section = &readme[readme.find("## Configuration").expect("a Configuration section")..];
    let start = section.find("```yaml\n").expect("a yaml example") + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").unwrap()];
    match config::parse(&[Source { name: "README.md".into(), text: yaml.to_string() }], &env) {
        Ok(c) => assert!(c.warnings.is_empty(), "{:?}", c.warnings),
        Err(p) => panic!(
            "the README's example does not validate:\n{}",
            p.iter().map(|e| format!("  {e}\n")).collect::<String>()
        ),
    }
}
