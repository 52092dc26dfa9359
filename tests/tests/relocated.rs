//! A compiled machine runs without its YAML files: `build.rs` compiled a copy of the
//! `machine_child` conformance case (a machine with a path-referenced agent and a child machine
//! in a sub-folder with its own agent), and this test moves the copy away before running it.

use flatmachines::Runtime;
use flatmachines::agent::FlatAgentAdapter;
use flatmachines_testkit::FakeLlm;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/report_pipeline.rs"));

/// Moves a directory away and back again when dropped (also when the test fails).
struct MovedAway {
    from: PathBuf,
    to: PathBuf,
}

impl MovedAway {
    fn new(dir: &Path) -> MovedAway {
        let to = dir.with_file_name("relocatable.moved-away");
        let _ = std::fs::remove_dir_all(&to);
        std::fs::rename(dir, &to).expect("move the compiled machine's folder away");
        MovedAway {
            from: dir.to_path_buf(),
            to,
        }
    }
}

impl Drop for MovedAway {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.to, &self.from);
    }
}

fn case() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/conformance/machine_child/case.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn runtime(server: &FakeLlm) -> Runtime {
    Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url(server.base_url()))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_machine_runs_after_its_yaml_folder_is_gone() {
    let case = case();
    let dir = Path::new(report_pipeline::DIR);
    assert!(
        dir.join("titler.yml").is_file(),
        "built from {}",
        dir.display()
    );
    let _moved = MovedAway::new(dir);
    assert!(!dir.exists());

    let server = FakeLlm::start(case["llm_script"].clone()).unwrap();
    let out = report_pipeline::execute(&runtime(&server), case["input"].clone())
        .await
        .unwrap();
    assert_eq!(out, case["expect"]["output"]);
    // The parent's agent and the child's agent (each read from its own folder) were called,
    // with the prompts and models of the embedded agent files.
    let log = server.log();
    assert_eq!(log.len(), 2, "{log:?}");
    let models: Vec<&str> = log.iter().filter_map(|r| r["model"].as_str()).collect();
    assert_eq!(models, ["child-squeezer", "child-titler"]);

    // The typed door, on a fresh script.
    let server = FakeLlm::start(case["llm_script"].clone()).unwrap();
    let input = report_pipeline::Input {
        text: Some(case["input"]["text"].clone()),
        limit: case["input"]["limit"].clone(),
        ..Default::default()
    };
    let out = report_pipeline::execute_typed(&runtime(&server), input)
        .await
        .unwrap();
    assert_eq!(out.title, json!("Green Library"));
    assert_eq!(out.child_result["limit_seen"], json!(8));
    assert!(out.extra.is_empty(), "{:?}", out.extra);
    assert!(!dir.exists());
}
