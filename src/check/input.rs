//! Input discovery and reading: files, directories (recursive, sorted), stdin, and the same
//! paths at a git revision. Everything here is I/O; evaluation happens elsewhere.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::model::InputError;

/// Extensions read when walking a directory (a file named on the command line is always read).
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Where a source's text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Stdin,
    /// `git show REV:path`.
    Git {
        rev: String,
        path: String,
    },
}

/// One input text, named as the user will see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub display: String,
    pub origin: Origin,
}

/// Expands command-line paths into sources, in a stable order. `-` is stdin.
pub fn discover(paths: &[String]) -> (Vec<Source>, Vec<InputError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for arg in paths {
        if arg == "-" {
            sources.push(Source { display: "-".into(), origin: Origin::Stdin });
            continue;
        }
        let path = Path::new(arg);
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, &mut sources, &mut errors),
            Ok(_) => sources.push(file_source(path)),
            Err(e) => errors.push(InputError {
                file: arg.clone(),
                line: None,
                message: format!("cannot read: {e}; check the path"),
            }),
        }
    }
    (sources, errors)
}

fn file_source(path: &Path) -> Source {
    Source { display: path.display().to_string(), origin: Origin::File(path.to_path_buf()) }
}

fn walk(dir: &Path, sources: &mut Vec<Source>, errors: &mut Vec<InputError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(InputError {
                file: dir.display().to_string(),
                line: None,
                message: format!("cannot list directory: {e}"),
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, sources, errors);
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e)) {
            sources.push(file_source(&path));
        }
    }
}

/// Reads a source's text. Stdin is read once by the caller and passed in.
pub fn read(source: &Source, stdin: &str) -> Result<String, InputError> {
    let err = |message: String| InputError { file: source.display.clone(), line: None, message };
    let bytes = match &source.origin {
        Origin::Stdin => return Ok(stdin.to_owned()),
        Origin::File(path) => std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?,
        Origin::Git { rev, path } => git(&["show", &format!("{rev}:{path}")]).map_err(err)?,
    };
    text(bytes).map_err(err)
}

/// Reads all of stdin.
pub fn read_stdin() -> Result<String, InputError> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).map_err(|e| InputError {
        file: "-".into(),
        line: None,
        message: format!("cannot read stdin: {e}"),
    })?;
    text(bytes).map_err(|message| InputError { file: "-".into(), line: None, message })
}

fn text(bytes: Vec<u8>) -> Result<String, String> {
    if bytes.contains(&0) {
        return Err("not a text file (it contains NUL bytes); pass YAML or JSON manifests".into());
    }
    String::from_utf8(bytes).map_err(|e| {
        format!("not UTF-8 text (invalid byte at offset {}); pass YAML or JSON manifests", e.utf8_error().valid_up_to())
    })
}

/// The manifests under `paths` as they were at git revision `rev` (for `--base`).
pub fn at_revision(rev: &str, paths: &[String]) -> (Vec<Source>, Vec<InputError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    let error = |message: String| InputError { file: format!("--base {rev}"), line: None, message };
    if let Err(e) = git(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]) {
        errors.push(error(format!("{rev:?} is not a commit in this git repository ({e}); pass a branch, tag or SHA")));
        return (sources, errors);
    }
    for arg in paths.iter().filter(|p| *p != "-") {
        let listing = match git(&["ls-tree", "-r", "-z", "--name-only", "--full-name", rev, "--", arg]) {
            Ok(out) => out,
            Err(e) => {
                errors.push(error(format!("cannot list {arg} at {rev}: {e}")));
                continue;
            }
        };
        let explicit_file = Path::new(arg).is_file();
        for name in listing.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name).into_owned();
            let wanted = explicit_file
                || Path::new(&name)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e));
            if wanted {
                sources.push(Source {
                    display: format!("{rev}:{name}"),
                    origin: Origin::Git { rev: rev.into(), path: name },
                });
            }
        }
    }
    (sources, errors)
}

fn git(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("git").args(args).output().map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() { Ok(out.stdout) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}
