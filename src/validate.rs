//! Local checks of an ICCID and a registration code, done before anything is sent.
//!
//! Pure functions with no I/O, so the reader can call them on every row and the tests can
//! drive them from tables. A row that fails here is never sent to the API.

/// Why a row cannot be sent. The text never contains the registration code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    IccidNotDigits,
    IccidLength(usize),
    CodeLength(usize),
    CodeCharacters,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::IccidNotDigits => write!(f, "ICCID must contain only digits"),
            Invalid::IccidLength(n) => write!(f, "ICCID must be 19 or 20 digits, found {n}"),
            Invalid::CodeLength(n) => {
                write!(
                    f,
                    "registration code must be 10 letters or digits, found {n} characters"
                )
            }
            Invalid::CodeCharacters => {
                write!(
                    f,
                    "registration code must contain only ASCII letters and digits"
                )
            }
        }
    }
}

/// The ICCID as the API wants it: the printed form with its spaces removed.
pub fn normalize_iccid(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Checks a normalised ICCID: 19 or 20 ASCII digits.
pub fn check_iccid(iccid: &str) -> Result<(), Invalid> {
    if !iccid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::IccidNotDigits);
    }
    match iccid.len() {
        19 | 20 => Ok(()),
        n => Err(Invalid::IccidLength(n)),
    }
}

/// Checks a registration code: exactly 10 ASCII letters or digits, case kept as given.
pub fn check_code(code: &str) -> Result<(), Invalid> {
    if !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Invalid::CodeCharacters);
    }
    match code.chars().count() {
        10 => Ok(()),
        n => Err(Invalid::CodeLength(n)),
    }
}

/// The ICCID as a number, a compact key for the sets that dedupe input and remember results.
pub fn iccid_key(iccid: &str) -> Option<u128> {
    check_iccid(iccid).ok()?;
    // 19 and 20 digit forms of the same number are different ICCIDs, so the length is part of the key.
    let value: u128 = iccid.parse().ok()?;
    Some(value * 100 + iccid.len() as u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iccid_table() {
        let cases: &[(&str, Result<&str, Invalid>)] = &[
            ("89883070000123456789", Ok("89883070000123456789")),
            ("8988307000012345678", Ok("8988307000012345678")),
            ("8988 3070 0001 2345 6789", Ok("89883070000123456789")),
            (" 89883070000123456789 ", Ok("89883070000123456789")),
            ("898830700001234567", Err(Invalid::IccidLength(18))),
            ("898830700001234567890", Err(Invalid::IccidLength(21))),
            ("8988307000012345678X", Err(Invalid::IccidNotDigits)),
            ("", Err(Invalid::IccidLength(0))),
            ("8988307000012345678٣", Err(Invalid::IccidNotDigits)),
        ];
        for (raw, expected) in cases {
            let iccid = normalize_iccid(raw);
            let got = check_iccid(&iccid).map(|()| iccid.as_str());
            assert_eq!(&got, &expected.clone(), "input {raw:?}");
        }
    }

    #[test]
    fn code_table() {
        let cases: &[(&str, Result<(), Invalid>)] = &[
            ("H3LL0W0RLD", Ok(())),
            ("h3ll0w0rld", Ok(())),
            ("0123456789", Ok(())),
            ("H3LL0W0RL", Err(Invalid::CodeLength(9))),
            ("H3LL0W0RLDX", Err(Invalid::CodeLength(11))),
            ("H3LL0-0RLD", Err(Invalid::CodeCharacters)),
            ("H3LL0 0RLD", Err(Invalid::CodeCharacters)),
            ("ÉBCDEFGHIJ", Err(Invalid::CodeCharacters)),
            ("", Err(Invalid::CodeLength(0))),
        ];
        for (code, expected) in cases {
            assert_eq!(&check_code(code), expected, "code {code:?}");
        }
    }

    #[test]
    fn invalid_reasons_never_quote_the_code() {
        let reason = check_code("SECRET-123").unwrap_err().to_string();
        assert!(!reason.contains("SECRET"), "{reason}");
    }

    #[test]
    fn keys_distinguish_leading_zero_lengths() {
        assert_ne!(
            iccid_key("8988307000012345678"),
            iccid_key("08988307000012345678")
        );
        assert_eq!(
            iccid_key("89883070000123456789"),
            iccid_key("89883070000123456789")
        );
        assert_eq!(iccid_key("123"), None);
    }
}
