//! Every `porter ...` command line the README and `docs/` show in a code block is parsed by the
//! CLI's own parser, so the documentation cannot drift from the flags: a renamed or removed flag
//! fails this test, naming the file, the line and clap's error.

use crate::cli::Cli;
use clap::error::ErrorKind;
use clap::Parser as _;
use std::path::{Path, PathBuf};

/// Placeholders the docs write in capitals, and the value each is parsed with: a line with a
/// placeholder is checked like any other, never skipped.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("DOMAIN", "shop.example"),
    ("ZONE", "example.com"),
    ("RULE", "example.com"),
    ("ID", "blog"),
    ("ADDR", "127.0.0.1:3000"),
    ("DIR", "/var/lib/porter"),
    ("FILE", "backup.json"),
    ("USER", "alice"),
];

/// A command line found in a document: where it starts, and the line itself (continuations
/// joined).
#[derive(Debug)]
struct Shown {
    line: usize,
    text: String,
}

/// The lines of `markdown`'s fenced code blocks, `\` continuations joined.
fn code_lines(markdown: &str) -> Vec<Shown> {
    let mut shown = Vec::new();
    let mut fence: Option<&str> = None;
    let mut pending: Option<Shown> = None;
    for (index, raw) in markdown.lines().enumerate() {
        let trimmed = raw.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => {
                fence = Some(m);
                continue;
            }
            (Some(open), Some(m)) if open == m => {
                fence = None;
                shown.extend(pending.take());
                continue;
            }
            (None, _) => continue,
            (Some(_), _) => {}
        }
        let (body, continues) = match raw.trim_end().strip_suffix('\\') {
            Some(body) => (body, true),
            None => (raw.trim_end(), false),
        };
        let entry = pending.get_or_insert_with(|| Shown {
            line: index + 1,
            text: String::new(),
        });
        entry.text.push(' ');
        entry.text.push_str(body.trim());
        if !continues {
            shown.extend(pending.take());
        }
    }
    shown
}

/// `text` with each placeholder (a whole word in capitals) replaced by its value.
fn substitute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let value = PLACEHOLDERS
            .iter()
            .find(|(name, _)| name == word)
            .map_or(word.as_str(), |(_, value)| value);
        out.push_str(value);
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The arguments of every `porter` invocation on a shell line: the program `porter` or a path
/// ending in `/porter`, after `$ `, `sudo` and its options, and variable assignments; each
/// command of a `&&`, `||`, `;` or `|` chain; redirections left out. Lines that are not shell,
/// or run other programs, give none; a line naming `porter` that does not split as shell words
/// (an unclosed quote) is an error rather than skipped.
fn porter_invocations(line: &str) -> Result<Vec<Vec<String>>, String> {
    let words = match shell_words::split(&substitute(line)) {
        Ok(words) => words,
        Err(error) if line.split_whitespace().any(|w| w.ends_with("porter")) => {
            return Err(error.to_string())
        }
        Err(_) => return Ok(Vec::new()),
    };
    Ok(words
        .split(|w| matches!(w.as_str(), "&&" | "||" | ";" | "|"))
        .filter_map(|command| {
            let mut words = command.iter().map(String::as_str).peekable();
            if words.peek() == Some(&"$") {
                words.next();
            }
            if words.peek() == Some(&"sudo") {
                words.next();
                while let Some(option) = words.next_if(|w| w.starts_with('-')) {
                    if matches!(option, "-u" | "-g") {
                        words.next();
                    }
                }
            }
            // Environment assignments before the program (`PORTER_ETCD_PASSWORD=... porter`).
            while words.next_if(|w| is_assignment(w)).is_some() {}
            let program = words.next()?;
            if program != "porter" && !program.ends_with("/porter") {
                return None;
            }
            let mut args = vec!["porter".to_string()];
            while let Some(word) = words.next() {
                if matches!(word, ">" | ">>" | "<" | "2>" | "2>&1") {
                    // The redirection's target is the next word (none for 2>&1).
                    if word != "2>&1" {
                        words.next();
                    }
                } else if !word.starts_with(['>', '<']) {
                    args.push(word.to_string());
                }
            }
            Some(args)
        })
        .collect())
}

/// Whether `word` is a shell variable assignment, `NAME=value`.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Each `porter` command line of `markdown` that the CLI's parser refuses, as
/// `NAME:LINE: COMMAND: ERROR`, and how many command lines there were.
fn refused(name: &str, markdown: &str) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut count = 0;
    for shown in code_lines(markdown) {
        let invocations = porter_invocations(&shown.text).unwrap_or_else(|error| {
            failures.push(format!(
                "{name}:{}: `{}`: {error}",
                shown.line,
                shown.text.trim()
            ));
            Vec::new()
        });
        for args in invocations {
            count += 1;
            if let Err(error) = Cli::try_parse_from(&args) {
                if !matches!(
                    error.kind(),
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
                ) {
                    let first = error.to_string();
                    let first = first.lines().next().unwrap_or_default();
                    failures.push(format!(
                        "{name}:{}: `{}`: {first}",
                        shown.line,
                        args.join(" ")
                    ));
                }
            }
        }
    }
    (failures, count)
}

/// README.md and every `docs/*.md`, in a stable order.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

#[test]
fn every_documented_command_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    let mut total = 0;
    for path in documents() {
        let text = std::fs::read_to_string(&path).expect("a document is readable");
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let (refused, count) = refused(&name, &text);
        failures.extend(refused);
        total += count;
    }
    // The README alone shows a quick start and the daily commands: finding fewer lines than
    // that means the extraction broke, not that the docs are right.
    assert!(
        total >= 20,
        "only {total} porter command lines found in the docs"
    );
    assert!(
        failures.is_empty(),
        "documented commands the CLI refuses:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_made_up_flag_is_reported_with_its_line() {
    let doc = "text\n\n```sh\nporter site list\n$ sudo -u porter target/release/porter site add \\\n    shop.example --upstream 127.0.0.1:3000 --made-up-flag   # comment\n```\n";
    let (failures, count) = refused("doc.md", doc);
    assert_eq!(count, 2);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("doc.md:5: `porter site add shop.example")
            && failures[0].contains("--made-up-flag"),
        "{}",
        failures[0]
    );
}

#[test]
fn chains_redirections_placeholders_and_help() {
    assert_eq!(
        porter_invocations("sudo dist/install.sh && porter store export > FILE"),
        Ok(vec![vec![
            "porter".to_string(),
            "store".into(),
            "export".into()
        ]])
    );
    assert_eq!(
        porter_invocations("PORTER_NODE=a porter cert renew DOMAIN"),
        Ok(vec![vec![
            "porter".to_string(),
            "cert".into(),
            "renew".into(),
            "shop.example".into()
        ]])
    );
    assert_eq!(porter_invocations("cargo build --release"), Ok(Vec::new()));
    assert!(porter_invocations("porter app add blog --command 'unclosed").is_err());
    let (failures, count) = refused(
        "doc.md",
        "```\nporter serve --help\nporter --version\n```\n",
    );
    assert_eq!((failures.len(), count), (0, 2), "{failures:?}");
}
