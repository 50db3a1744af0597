//! Server text in a results cell, made safe for a spreadsheet. A cell that starts with `=`,
//! `+`, `-` or `@` (after any spaces) is a formula to Excel, LibreOffice and Google Sheets,
//! so, as the usual CSV-injection guidance (OWASP) says, such a cell of server text is
//! written with a `'` in front: spreadsheets then show it as text, and a person reading the
//! file sees what the server said. Control characters never reach here: the client has
//! replaced them already (see `api::server_text`).
//!
//! Only the columns that carry a server's text get it (`status`, `fleet_sid`,
//! `error_message`, `unique_name`); outcome words, column names and the tool's own words
//! (which never start with those characters) are written as they are. Marking a cell twice
//! changes nothing, so a value read back from a results file compares with one marked now.

use std::borrow::Cow;

/// `text`, with a `'` in front when a spreadsheet would take it for a formula.
pub(crate) fn spreadsheet_safe(text: &str) -> Cow<'_, str> {
    if starts_a_formula(text) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn starts_a_formula(text: &str) -> bool {
    text.trim_start_matches(' ')
        .starts_with(['=', '+', '-', '@'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formula_is_marked_as_text_once() {
        for (text, cell) in [
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("+49 170 1234567", "'+49 170 1234567"),
            ("-2+3", "'-2+3"),
            ("@SUM(1)", "'@SUM(1)"),
            ("  =1+1", "'  =1+1"),
            ("'=1+1", "'=1+1"),
            (
                "The ICCID and registration code do not match",
                "The ICCID and registration code do not match",
            ),
            ("new", "new"),
            ("", ""),
        ] {
            assert_eq!(spreadsheet_safe(text), cell);
            assert_eq!(spreadsheet_safe(&spreadsheet_safe(text)), cell);
        }
    }
}
