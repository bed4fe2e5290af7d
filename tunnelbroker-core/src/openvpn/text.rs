//! The two text formats this module emits: OpenVPN configuration files and
//! POSIX shell scripts.
//!
//! Both are built as typed lines first and only turned into text in their
//! `Display` implementations. OpenVPN arguments are validated words (see
//! [`values`](super::values)); should one ever hold a character that the
//! OpenVPN parser treats specially, it is double-quoted and escaped. Shell
//! words are always single-quoted, environment variables always
//! double-quoted, so no interpolated value can become code.

use std::fmt;

use super::values::InlineText;
use crate::error::flatten;

/// One line (or inline block) of an OpenVPN configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// `# text`
    Comment(String),
    /// An empty line.
    Blank,
    /// `name arg arg ...`
    Directive(&'static str, Vec<String>),
    /// `<tag>\ntext</tag>`
    Inline(&'static str, InlineText),
}

/// An OpenVPN configuration file (server config, client config or CCD entry).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ConfigText {
    lines: Vec<Line>,
}

impl ConfigText {
    pub(crate) fn comment(&mut self, text: impl Into<String>) -> &mut Self {
        self.lines.push(Line::Comment(text.into()));
        self
    }
    pub(crate) fn blank(&mut self) -> &mut Self {
        self.lines.push(Line::Blank);
        self
    }
    pub(crate) fn opt(&mut self, name: &'static str) -> &mut Self {
        self.lines.push(Line::Directive(name, Vec::new()));
        self
    }
    pub(crate) fn opt_args<I, S>(&mut self, name: &'static str, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        self.lines.push(Line::Directive(
            name,
            args.into_iter().map(|a| a.to_string()).collect(),
        ));
        self
    }
    pub(crate) fn inline(&mut self, tag: &'static str, text: &InlineText) -> &mut Self {
        self.lines.push(Line::Inline(tag, text.clone()));
        self
    }
}

/// Writes an OpenVPN argument, quoting it if its characters need it.
fn write_arg(f: &mut fmt::Formatter<'_>, arg: &str) -> fmt::Result {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '#' | ';'));
    if plain {
        return f.write_str(arg);
    }
    f.write_str("\"")?;
    for c in arg.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' | '\r' => f.write_str(" ")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for ConfigText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            match line {
                Line::Comment(t) => writeln!(f, "# {}", flatten(t))?,
                Line::Blank => writeln!(f)?,
                Line::Directive(name, args) => {
                    f.write_str(name)?;
                    for a in args {
                        f.write_str(" ")?;
                        write_arg(f, a)?;
                    }
                    writeln!(f)?;
                }
                Line::Inline(tag, text) => {
                    writeln!(f, "<{tag}>")?;
                    f.write_str(text.as_str())?;
                    writeln!(f, "</{tag}>")?;
                }
            }
        }
        Ok(())
    }
}

/// A word of a shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Word {
    /// A command or option word fixed in this crate's source (never
    /// interpolated), written as is.
    Cmd(&'static str),
    /// A literal, always single-quoted.
    Lit(String),
    /// An environment or script variable, `"$name"`.
    Var(&'static str),
}

/// Single-quotes `s` for a POSIX shell.
pub(crate) fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Word::Cmd(s) => f.write_str(s),
            Word::Lit(s) => f.write_str(&sh_quote(s)),
            Word::Var(v) => write!(f, "\"${v}\""),
        }
    }
}

/// One step of a generated script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `name="${ENV:-default}"`: a variable from the environment with a
    /// validated default.
    EnvDefault {
        /// Script variable.
        var: &'static str,
        /// Environment variable that overrides the default.
        env: &'static str,
        /// Default value.
        default: String,
    },
    /// A command, word by word.
    Run(Vec<Word>),
    /// A command whose failure is ignored (`... 2>/dev/null || true`), for
    /// undoing something that may be gone already.
    RunTolerant(Vec<Word>),
    /// Turns IPv6 forwarding on, leaving a marker file when it was off, so
    /// that [`Step::RestoreForwarding`] can turn it off again.
    EnableForwarding {
        /// The marker file.
        marker: String,
    },
    /// Turns IPv6 forwarding off again if the marker file says that the up
    /// script turned it on.
    RestoreForwarding {
        /// The marker file.
        marker: String,
    },
    /// Runs `steps` when the network interface named by the script variable
    /// `var` exists. Otherwise it says so in one line, `missing` (its words
    /// joined without spaces), on stderr (which OpenVPN puts in its log)
    /// and to syslog through `logger` where there is one, and goes on: the
    /// script still succeeds.
    IfInterface {
        /// The script variable that names the interface.
        var: &'static str,
        /// What to do with the interface.
        steps: Vec<Step>,
        /// The line to log when it does not exist.
        missing: Vec<Word>,
    },
}

/// A generated POSIX shell script: `#!/bin/sh`, a header comment, `set -eu`,
/// then its steps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ScriptText {
    header: Vec<String>,
    steps: Vec<Step>,
}

impl ScriptText {
    pub(crate) fn header(&mut self, text: impl Into<String>) -> &mut Self {
        self.header.push(text.into());
        self
    }
    pub(crate) fn step(&mut self, step: Step) -> &mut Self {
        self.steps.push(step);
        self
    }
    pub(crate) fn run(&mut self, words: Vec<Word>) -> &mut Self {
        self.steps.push(Step::Run(words));
        self
    }
}

fn write_words(f: &mut fmt::Formatter<'_>, words: &[Word]) -> fmt::Result {
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{w}")?;
    }
    Ok(())
}

const FORWARDING: &str = "net.ipv6.conf.all.forwarding";

impl fmt::Display for ScriptText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "#!/bin/sh")?;
        for h in &self.header {
            writeln!(f, "# {}", flatten(h))?;
        }
        writeln!(f, "set -eu")?;
        for step in &self.steps {
            write_step(f, step, "")?;
        }
        Ok(())
    }
}

/// Writes one step, each of its lines indented by `indent`.
fn write_step(f: &mut fmt::Formatter<'_>, step: &Step, indent: &str) -> fmt::Result {
    match step {
        Step::EnvDefault { var, env, default } => {
            // `default` is a validated word; quoting keeps it inert anyway.
            writeln!(f, "{indent}{var}=\"${{{env}:-}}\"")?;
            writeln!(
                f,
                "{indent}[ -n \"${var}\" ] || {var}={}",
                sh_quote(default)
            )?;
        }
        Step::Run(words) => {
            f.write_str(indent)?;
            write_words(f, words)?;
            writeln!(f)?;
        }
        Step::RunTolerant(words) => {
            f.write_str(indent)?;
            write_words(f, words)?;
            writeln!(f, " 2>/dev/null || true")?;
        }
        Step::EnableForwarding { marker } => {
            let m = sh_quote(marker);
            writeln!(f, "{indent}if [ \"$(sysctl -n {FORWARDING})\" != 1 ]; then")?;
            writeln!(f, "{indent}    sysctl -q -w {FORWARDING}=1")?;
            writeln!(f, "{indent}    : > {m}")?;
            writeln!(f, "{indent}fi")?;
        }
        Step::RestoreForwarding { marker } => {
            let m = sh_quote(marker);
            writeln!(f, "{indent}if [ -e {m} ]; then")?;
            writeln!(f, "{indent}    sysctl -q -w {FORWARDING}=0")?;
            writeln!(f, "{indent}    rm -f {m}")?;
            writeln!(f, "{indent}fi")?;
        }
        Step::IfInterface {
            var,
            steps,
            missing,
        } => {
            let inner = format!("{indent}    ");
            writeln!(
                f,
                "{indent}if ip link show dev \"${var}\" >/dev/null 2>&1; then"
            )?;
            for s in steps {
                write_step(f, s, &inner)?;
            }
            writeln!(f, "{indent}else")?;
            f.write_str(&inner)?;
            f.write_str("msg=")?;
            for w in missing {
                write!(f, "{w}")?;
            }
            writeln!(f)?;
            writeln!(f, "{inner}printf '%s\\n' \"$msg\" >&2")?;
            writeln!(
                f,
                "{inner}if command -v logger >/dev/null 2>&1; then logger -t tunnelbroker -- \"$msg\" || true; fi"
            )?;
            writeln!(f, "{indent}fi")?;
        }
    }
    Ok(())
}

/// `ip -6 addr VERB ADDR dev "$DEV_VAR"`, the one command the up and down
/// scripts of servers and clients run on an interface.
pub(crate) fn ip_addr(verb: &'static str, addr: String, dev_var: &'static str) -> Vec<Word> {
    vec![
        Word::Cmd("ip"),
        Word::Cmd("-6"),
        Word::Cmd("addr"),
        Word::Cmd(verb),
        Word::Lit(addr),
        Word::Cmd("dev"),
        Word::Var(dev_var),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_words_inert() {
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
        assert_eq!(sh_quote("$(reboot)"), "'$(reboot)'");
        let mut s = ScriptText::default();
        s.run(vec![
            Word::Cmd("echo"),
            Word::Lit("x'; rm -rf /; '".into()),
            Word::Var("dev"),
        ]);
        let text = s.to_string();
        assert!(
            text.contains("echo 'x'\\''; rm -rf /; '\\''' \"$dev\""),
            "{text}"
        );
        assert!(text.starts_with("#!/bin/sh\nset -eu\n"), "{text}");
    }

    #[test]
    fn config_arguments_with_odd_characters_are_quoted() {
        let mut c = ConfigText::default();
        c.opt_args("x", ["a b", "c\"d", "#e", "plain"]);
        c.comment("two\nlines");
        assert_eq!(
            c.to_string(),
            "x \"a b\" \"c\\\"d\" \"#e\" plain\n# two\\nlines\n"
        );
    }
}
