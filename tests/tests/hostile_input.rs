//! Files written to break `flatmachines check` and `run`: each must be answered with a
//! diagnostic in bounded time and memory, never a hang, a crash or an echo of a file that is
//! no machine. Every case goes through both front ends the CLI uses: `check_file` (what
//! `flatmachines check` runs) and `Machine::from_file` (what `flatmachines run` loads with).

use flatmachines::{Error, Machine};
use flatmachines_compiler::check_file;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// A fresh directory for one case.
fn scratch(case: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-hostile-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What `check` says about `path`: the diagnostic codes and the rendered text. `run` must
/// agree: refuse the machine with the same text when there is an error, load it otherwise.
/// Each runs on its own thread and must finish within two minutes: the inputs take well under
/// a second (a few in a debug build), so only a hang trips the deadline.
fn both(path: &Path) -> (Vec<String>, String) {
    let p = path.to_path_buf();
    let (codes, rendered, errors) = within_two_minutes(move || {
        let c = check_file(&p);
        let codes: Vec<String> = c
            .diagnostics
            .iter()
            .map(|d| d.code.as_str().to_string())
            .collect();
        (codes, c.render(), c.has_errors())
    });
    let p = path.to_path_buf();
    let ran = within_two_minutes(move || match Machine::from_file(&p) {
        Ok(_) => None,
        Err(Error::Invalid { rendered, .. }) => Some(rendered),
        Err(e) => Some(format!("other error: {e}")),
    });
    match ran {
        Some(r) => assert_eq!(r, rendered, "run and check disagree on {}", path.display()),
        None => assert!(
            !errors,
            "run loaded {} despite:\n{rendered}",
            path.display()
        ),
    }
    (codes, rendered)
}

fn within_two_minutes<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("no answer within two minutes")
}

/// A machine whose `start` state uses agent `a`, found at `agent`.
fn machine_naming_agent(agent: &str) -> String {
    format!(
        "spec: flatmachine\ndata:\n  agents:\n    a: {agent}\n  states:\n    start: {{type: initial, agent: a, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
    )
}

const STATES: &str =
    "  states:\n    start: {type: initial, transitions: [{to: done}]}\n    done: {type: final}\n";

#[test]
fn an_alias_bomb_is_refused_at_the_node_limit() {
    let dir = scratch("bomb");
    let mut text = String::from("spec: flatmachine\ndata:\n  context:\n");
    text.push_str("    a: &a [x, x, x, x, x, x, x, x, x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let aliases = vec![format!("*{}", w[0]); 9].join(",");
        text.push_str(&format!("    {}: &{} [{aliases}]\n", w[1], w[1]));
    }
    text.push_str(STATES);
    assert!(text.len() < 1000);
    let file = dir.join("bomb.yml");
    std::fs::write(&file, text).unwrap();
    let (codes, out) = both(&file);
    assert_eq!(codes, ["FM0011"], "{out}");
    assert!(out.contains("past 1000000 nodes"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deep_block_nesting_is_refused_at_the_depth_limit() {
    let dir = scratch("deep");
    let file = dir.join("deep.yml");
    std::fs::write(&file, format!("{}1\n", "- ".repeat(60_000))).unwrap();
    let (codes, out) = both(&file);
    assert_eq!(codes, ["FM0011"], "{out}");
    assert!(out.contains("deeper than 256 levels"), "{out}");
    // The excerpt of the 120 000-character line is a window of it.
    assert!(out.lines().all(|l| l.chars().count() < 200), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nesting_just_within_the_limit_is_checked_on_a_small_stack() {
    // 250 levels of maps in the context (the document adds three): every recursive walk of
    // check and run over it must fit the 2 MiB stack of a spawned thread in a debug build.
    let dir = scratch("nested");
    let mut text = String::from("spec: flatmachine\ndata:\n  context:\n    x: ");
    text.push_str(&"{a: ".repeat(250));
    text.push_str("\"{{ input.y }}\"");
    text.push_str(&"}".repeat(250));
    text.push('\n');
    text.push_str(STATES);
    let file = dir.join("nested.yml");
    std::fs::write(&file, text).unwrap();
    let (codes, out) = both(&file);
    assert!(!codes.iter().any(|c| c == "FM0011"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_machine_of_many_states_is_checked() {
    // 20 000 states, end to end (the linear reading of large maps itself is tested in the
    // compiler, where a quadratic one would miss a deadline on 200 000 keys).
    let dir = scratch("wide");
    let mut text = format!("spec: flatmachine\ndata:\n{STATES}");
    for i in 0..20_000 {
        text.push_str(&format!("    s{i}: {{transitions: [{{to: done}}]}}\n"));
    }
    let file = dir.join("wide.yml");
    std::fs::write(&file, text).unwrap();
    let (codes, _) = both(&file);
    // Each extra state is unreachable (a warning): nothing else.
    assert_eq!(codes.len(), 20_000);
    assert!(codes.iter().all(|c| c == "FM0107"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn special_files_are_not_read() {
    let dir = scratch("special");
    let fifo = dir.join("fifo.yml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        // Opening a FIFO blocks until a writer comes: this hung `check` for ever.
        let file = dir.join("fifo_machine.yml");
        std::fs::write(&file, machine_naming_agent("./fifo.yml")).unwrap();
        let (codes, out) = both(&file);
        assert!(codes.contains(&"FM0003".to_string()), "{out}");
        assert!(out.contains("not a regular file but a FIFO"), "{out}");
    }
    // `/dev/zero` never ends: it was read until memory ran out.
    let file = dir.join("zero.yml");
    std::fs::write(&file, machine_naming_agent("/dev/zero")).unwrap();
    let (codes, out) = both(&file);
    assert!(codes.contains(&"FM0003".to_string()), "{out}");
    assert!(out.contains("character device"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let dir = scratch("large");
    let agent = dir.join("agent.yml");
    let big = format!(
        "spec: flatagent\ndata: {{x: \"{}\"}}\n",
        "a".repeat(17 << 20)
    );
    std::fs::write(&agent, big).unwrap();
    let file = dir.join("machine.yml");
    std::fs::write(&file, machine_naming_agent("./agent.yml")).unwrap();
    let (codes, out) = both(&file);
    assert!(codes.contains(&"FM0011".to_string()), "{out}");
    assert!(out.contains("larger than 16 MiB, the limit"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn files_that_are_no_machine_documents_are_never_echoed() {
    let dir = scratch("secrets");
    // The environment of the process (NUL-separated): PATH is in every environment.
    let file = dir.join("environ.yml");
    std::fs::write(&file, machine_naming_agent("/proc/self/environ")).unwrap();
    let (codes, out) = both(&file);
    assert!(codes.contains(&"FM0012".to_string()), "{out}");
    let path_var = std::env::var("PATH").unwrap_or_default();
    assert!(!out.contains("PATH=") && !out.contains(&path_var), "{out}");
    // A shadow-like file parses as YAML (a map of one odd key), a key file as a string.
    for (name, text) in [
        (
            "shadow",
            "root:$6$hunter2:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n",
        ),
        (
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nhunter2\n-----END PRIVATE KEY-----\n",
        ),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
        let file = dir.join(format!("{name}.machine.yml"));
        std::fs::write(&file, machine_naming_agent(&format!("./{name}"))).unwrap();
        let (codes, out) = both(&file);
        assert_eq!(codes, ["FM0004"], "{out}");
        assert!(!out.contains("hunter2"), "{out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_utf8_is_reported_at_the_bad_byte() {
    let dir = scratch("utf8");
    let file = dir.join("machine.yml");
    let mut text = b"spec: flatmachine\ndata:\n  context:\n    x: \"ab".to_vec();
    text.extend_from_slice(b"\xff\xfecd\"\n");
    text.extend_from_slice(STATES.as_bytes());
    std::fs::write(&file, text).unwrap();
    let (codes, out) = both(&file);
    assert_eq!(codes, ["FM0012"], "{out}");
    assert!(out.contains("machine.yml:4:11"), "{out}");
    assert!(out.contains("0xFF"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durations_no_run_can_wait_are_refused() {
    let dir = scratch("durations");
    let file = dir.join("machine.yml");
    let text = "spec: flatmachine\ndata:\n  states:\n    start:\n      type: initial\n      execution: {type: retry, backoffs: [1.0e+300]}\n      transitions: [{to: done}]\n    done: {type: final}\n";
    std::fs::write(&file, text).unwrap();
    let (codes, out) = both(&file);
    assert_eq!(codes, ["FM0411"], "{out}");
    assert!(out.contains("longer than a year"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}
