//! Bounded text from the outside world: free human text (`Text<MAX>`) and identifier-like tokens
//! (run ids, versions, interface names), each with a byte cap so a hostile peer cannot make the
//! collector hold megabytes per field or inject terminal escapes into the CLI's output.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a piece of text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long, more than the {max} allowed")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error("{what} {value:?} contains {ch:?}, which is not allowed here")]
    BadChar { what: &'static str, value: String, ch: char },
}

/// The start of `s`, for quoting untrusted input in error messages (hostile input can be
/// megabytes long).
pub fn excerpt(s: &str) -> String {
    const LIMIT: usize = 80;
    if s.len() <= LIMIT {
        return s.to_owned();
    }
    let mut end = LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Characters human text may hold: anything printable, plus newline and tab.
fn is_text_char(c: char) -> bool {
    !c.is_control() || c == '\n' || c == '\t'
}

/// Human text of at most `MAX` bytes with no control characters other than newline and tab.
/// May be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    pub const MAX_BYTES: usize = MAX;

    /// Checks `s`; text from the network goes through here.
    pub fn new(s: impl Into<String>) -> Result<Self, TextError> {
        let s = s.into();
        if s.len() > MAX {
            return Err(TextError::TooLong { what: "text", len: s.len(), max: MAX });
        }
        if let Some(ch) = s.chars().find(|c| !is_text_char(*c)) {
            return Err(TextError::BadChar { what: "text", value: excerpt(&s), ch });
        }
        Ok(Self(s))
    }

    /// Makes text out of anything (an OS error, a peer's banner): control characters become
    /// U+FFFD and the end is cut, marked with `…`, to fit `MAX` bytes. For text we produce.
    pub fn lossy(s: &str) -> Self {
        const MARK: char = '…';
        let cleaned: String =
            s.chars().map(|c| if is_text_char(c) { c } else { char::REPLACEMENT_CHARACTER }).collect();
        if cleaned.len() <= MAX {
            return Self(cleaned);
        }
        let mark_fits = MAX >= MARK.len_utf8();
        let budget = if mark_fits { MAX - MARK.len_utf8() } else { MAX };
        let mut out = String::with_capacity(MAX);
        for c in cleaned.chars() {
            if out.len() + c.len_utf8() > budget {
                break;
            }
            out.push(c);
        }
        if mark_fits {
            out.push(MARK);
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MAX: usize> TryFrom<String> for Text<MAX> {
    type Error = TextError;
    fn try_from(s: String) -> Result<Self, TextError> {
        Self::new(s)
    }
}

impl<const MAX: usize> From<Text<MAX>> for String {
    fn from(t: Text<MAX>) -> String {
        t.0
    }
}

impl<const MAX: usize> fmt::Display for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> AsRef<str> for Text<MAX> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks an identifier-like token: not empty, at most `max` bytes, every char `allowed`.
pub(crate) fn check_token(
    what: &'static str,
    s: &str,
    max: usize,
    allowed: fn(char) -> bool,
) -> Result<(), TextError> {
    if s.is_empty() {
        return Err(TextError::Empty { what });
    }
    if s.len() > max {
        return Err(TextError::TooLong { what, len: s.len(), max });
    }
    if let Some(ch) = s.chars().find(|c| !allowed(*c)) {
        return Err(TextError::BadChar { what, value: excerpt(s), ch });
    }
    Ok(())
}

/// Letters, digits and `-_.:`: ids (run ids, instance ids, finding ids).
pub(crate) fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// Any printable ASCII except space: labels such as a link kind or a neighbour state.
pub(crate) fn is_graphic_char(c: char) -> bool {
    c.is_ascii_graphic()
}

/// Defines a validated newtype over `String`; `$check: fn(&str) -> Result<(), TextError>` is the
/// one rule every constructor (and serde) goes through.
macro_rules! token_type {
    ($(#[$doc:meta])* $ty:ident, check = $check:path) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize, ::serde::Deserialize,
        )]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn new(s: impl Into<String>) -> Result<Self, $crate::text::TextError> {
                let s = s.into();
                $check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $crate::text::TextError;
            fn try_from(s: String) -> Result<Self, $crate::text::TextError> {
                Self::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(t: $ty) -> String {
                t.0
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::text::TextError;
            fn from_str(s: &str) -> Result<Self, $crate::text::TextError> {
                Self::new(s)
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
pub(crate) use token_type;

/// An error and its sources as one line, `outer: inner: innermost` (netdiag's messages never
/// repeat their source's, so nothing is said twice).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_caps_length_and_control_characters() {
        assert!(Text::<8>::new("").is_ok());
        assert!(Text::<8>::new("line\n\tok").is_ok());
        assert_eq!(Text::<4>::new("hello"), Err(TextError::TooLong { what: "text", len: 5, max: 4 }));
        let err = Text::<64>::new("red \u{1b}[31m").unwrap_err();
        assert!(matches!(err, TextError::BadChar { ch: '\u{1b}', .. }), "{err}");
    }

    #[test]
    fn lossy_text_always_fits() {
        for (input, max_out) in [("abc", "abc"), ("a\u{0}b", "a\u{fffd}b")] {
            assert_eq!(Text::<16>::lossy(input).as_str(), max_out);
        }
        let long = "é".repeat(100);
        let t = Text::<11>::lossy(&long);
        assert!(t.as_str().len() <= 11, "{t}");
        assert!(t.as_str().ends_with('…'));
        assert!(Text::<11>::new(t.into_string()).is_ok());
        assert_eq!(Text::<2>::lossy("abcdef").as_str().len(), 2);
    }

    #[test]
    fn tokens_are_checked() {
        assert!(check_token("id", "run-1.a:b_c", 16, is_id_char).is_ok());
        assert_eq!(check_token("id", "", 16, is_id_char), Err(TextError::Empty { what: "id" }));
        assert!(matches!(check_token("id", "a b", 16, is_id_char), Err(TextError::BadChar { ch: ' ', .. })));
        assert!(matches!(
            check_token("id", &"a".repeat(17), 16, is_id_char),
            Err(TextError::TooLong { len: 17, .. })
        ));
    }

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        let s = "ü".repeat(100);
        let e = excerpt(&s);
        assert!(e.len() < 90 && e.ends_with('…'));
    }

    proptest::proptest! {
        #[test]
        fn lossy_output_is_always_valid(s in ".*") {
            let t = Text::<32>::lossy(&s);
            proptest::prop_assert!(Text::<32>::new(t.into_string()).is_ok());
        }
    }

    #[test]
    fn error_chains_join_every_source() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the inventory")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"));
        assert_eq!(error_chain(&e), "reading the inventory: no such file");
    }
}
