//! What every fuzz target asserts of the crate's errors, and small helpers
//! to cut one input into several.

use std::fmt::Display;

use tunnelbroker_core::Error;

/// The crate's one-line rule (error.rs): a message is one line, not empty,
/// with no control character at all (every quoted input is `flatten`ed).
pub fn assert_one_line(what: &str, message: impl Display) {
    let text = message.to_string();
    assert!(!text.is_empty(), "{what}: empty message");
    assert!(
        !text.chars().any(char::is_control),
        "{what}: the message is not one line: {text:?}"
    );
}

/// Checks an error of the crate: one line, and it has a kind.
pub fn check_error(what: &str, e: &Error) {
    let _ = e.kind();
    assert_one_line(what, e);
}

/// Checks the error of a result, if any, and gives the value back.
pub fn checked<T>(what: &str, r: tunnelbroker_core::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            check_error(what, &e);
            None
        }
    }
}

/// Splits `data` at the first byte `0xff` (which UTF-8 text never holds),
/// the way the seeds of multi-part targets are written.
pub fn split_ff(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Bytes as text, lossily: parsers of text get every input, and invalid
/// UTF-8 becomes U+FFFD rather than being thrown away.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
