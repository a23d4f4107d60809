//! `ctr completion`: the scripts complete as a user types, and the copies
//! shipped under contrib/autocomplete/ are what the binary prints.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn completion(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ctr"))
        .args(["completion", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/autocomplete")
        .join(name)
}

/// What bash offers after `words` with the cursor on the last one.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        "source {script:?}
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE={line:?}
COMP_POINT={point}
_ctr ctr {cur:?} {prev:?}
printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words.join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(program)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_commands_and_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ctr.bash");
    std::fs::write(&script, completion("bash")).unwrap();
    assert_eq!(bash_complete(&script, &["ctr", "ima"]), ["images"]);
    let tasks = bash_complete(&script, &["ctr", "tasks", ""]);
    for sub in ["ls", "start", "kill", "exec", "checkpoint"] {
        assert!(tasks.iter().any(|w| w == sub), "{sub} not in {tasks:?}");
    }
    let flags = bash_complete(&script, &["ctr", "images", "pull", "--pl"]);
    assert!(flags.iter().any(|w| w == "--platform"), "{flags:?}");
}

#[test]
fn zsh_script_defines_the_completion_function() {
    let script = completion("zsh");
    assert!(script.starts_with("#compdef ctr"), "{}", &script[..80]);
    assert!(
        script.contains("'images:Manage images'"),
        "no images command in the zsh script"
    );
}

#[test]
fn contrib_scripts_are_what_ctr_prints() {
    for (shell, file) in [("bash", "ctr.bash"), ("zsh", "_ctr")] {
        let shipped = std::fs::read_to_string(contrib(file)).unwrap_or_default();
        assert!(
            shipped == completion(shell),
            "contrib/autocomplete/{file} is stale: run `ctr completion {shell} > contrib/autocomplete/{file}`"
        );
    }
}

#[test]
fn an_unknown_shell_is_refused_by_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_ctr"))
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tcsh"), "{stderr}");
}
