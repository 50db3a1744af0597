//! Local checks of an ICCID and a registration code, done before anything is sent.
//!
//! Pure functions with no I/O, so the reader, `register` and `validate` share them and the
//! tests can drive them from tables. A hard check that fails ([`Invalid`]) keeps the row from
//! ever being sent; a soft one ([`Warning`]) is reported and the row is still sent, unless
//! `--strict` asks for warnings to count as invalid. No message ever quotes the code.

/// Which column a problem is in, as the `validate` report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    /// The record as a whole (too long, broken quoting, an unused field that is not text).
    Row,
    Iccid,
    Code,
}

impl Column {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Column::Row => "row",
            Column::Iccid => "iccid",
            Column::Code => "registration_code",
        }
    }

    /// The column as a sentence names it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Column::Row => "row",
            Column::Iccid => "ICCID",
            Column::Code => "registration code",
        }
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a row cannot be sent. The text never contains the registration code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    IccidEmpty,
    /// A spreadsheet turned the ICCID into a number like `8.98831E+19`: its digits are gone.
    IccidScientific,
    /// The first character that is not a digit, and its position (1-based, counted in the
    /// ICCID as normalised: spaces and hyphens left out).
    IccidNotDigits {
        found: char,
        position: usize,
    },
    IccidLength(usize),
    IccidPrefix,
    CodeEmpty,
    CodeLength(usize),
    CodeCharacters,
}

impl Invalid {
    pub(crate) fn column(&self) -> Column {
        match self {
            Invalid::IccidEmpty
            | Invalid::IccidScientific
            | Invalid::IccidNotDigits { .. }
            | Invalid::IccidLength(_)
            | Invalid::IccidPrefix => Column::Iccid,
            Invalid::CodeEmpty | Invalid::CodeLength(_) | Invalid::CodeCharacters => Column::Code,
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::IccidEmpty => write!(f, "ICCID is empty"),
            Invalid::IccidScientific => write!(
                f,
                "ICCID was turned into a number in scientific notation by a spreadsheet and \
                 its digits are lost; format the column as text and export it again"
            ),
            Invalid::IccidNotDigits { found, position } => write!(
                f,
                "ICCID must contain only digits: {found:?} is character {position} (spaces, \
                 hyphens and a trailing F are removed)"
            ),
            Invalid::IccidLength(n) => write!(f, "ICCID must be 19 or 20 digits, found {n}"),
            Invalid::IccidPrefix => write!(
                f,
                "ICCID must start with 89, the prefix of every SIM card number; check the column"
            ),
            Invalid::CodeEmpty => write!(f, "registration code is empty"),
            Invalid::CodeLength(n) => write!(
                f,
                "registration code must be 10 letters or digits, found {n} character{}",
                if *n == 1 { "" } else { "s" }
            ),
            Invalid::CodeCharacters => write!(
                f,
                "registration code must contain only ASCII letters and digits"
            ),
        }
    }
}

/// Something odd about a row that is still sent (unless `--strict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Warning {
    /// The last digit is not the Luhn check digit of the others. The API's own example ICCID
    /// fails this, so it cannot be a rejection.
    IccidCheckDigit,
    /// The first seven digits are not a prefix seen on Super SIMs.
    IccidPrefix(String),
    /// Codes are printed in capitals; a lowercase one may be a typo, but it is sent as written.
    CodeLowercase,
}

/// ICCID prefixes seen on Super SIMs.
pub(crate) const SUPER_SIM_PREFIXES: [&str; 3] = ["8988307", "8910392", "8988323"];

impl Warning {
    pub(crate) fn column(&self) -> Column {
        match self {
            Warning::IccidCheckDigit | Warning::IccidPrefix(_) => Column::Iccid,
            Warning::CodeLowercase => Column::Code,
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::IccidCheckDigit => write!(
                f,
                "ICCID check digit does not match (Luhn); check the digits for a typo"
            ),
            Warning::IccidPrefix(prefix) => write!(
                f,
                "ICCID starts {prefix}, not a prefix seen on Super SIMs ({}); check that it is a Super SIM",
                SUPER_SIM_PREFIXES.join(", ")
            ),
            Warning::CodeLowercase => write!(
                f,
                "registration code has lowercase letters; it is sent as written, but printed codes are capitals"
            ),
        }
    }
}

/// True for the characters printed between ICCID digit groups: whitespace, hyphens and dashes,
/// and the invisible characters copied along from web pages.
fn is_iccid_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{feff}' | '\u{200b}'
        )
}

/// The ICCID as the API wants it: the printed form without spaces and hyphens, and without
/// the `F` filler some cards print after a 19-digit number.
pub(crate) fn normalize_iccid(raw: &str) -> String {
    let mut iccid: String = raw.chars().filter(|c| !is_iccid_separator(*c)).collect();
    if iccid.ends_with(['F', 'f']) {
        iccid.pop();
    }
    iccid
}

/// Hard checks of a normalised ICCID: 19 or 20 ASCII digits starting `89`.
pub fn check_iccid(iccid: &str) -> Result<(), Invalid> {
    if iccid.is_empty() {
        return Err(Invalid::IccidEmpty);
    }
    if let Some((index, found)) = iccid.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        let scientific = iccid.contains('.') && (iccid.contains("E+") || iccid.contains("e+"));
        return Err(if scientific {
            Invalid::IccidScientific
        } else {
            Invalid::IccidNotDigits {
                found,
                position: index + 1,
            }
        });
    }
    match iccid.len() {
        19 | 20 if iccid.starts_with("89") => Ok(()),
        19 | 20 => Err(Invalid::IccidPrefix),
        n => Err(Invalid::IccidLength(n)),
    }
}

/// Hard checks of a registration code: exactly 10 ASCII letters or digits, case kept.
pub fn check_code(code: &str) -> Result<(), Invalid> {
    if code.is_empty() {
        return Err(Invalid::CodeEmpty);
    }
    if !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Invalid::CodeCharacters);
    }
    match code.len() {
        10 => Ok(()),
        n => Err(Invalid::CodeLength(n)),
    }
}

/// Soft checks of an ICCID that passed [`check_iccid`].
pub(crate) fn iccid_warnings(iccid: &str) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if !luhn_ok(iccid) {
        warnings.push(Warning::IccidCheckDigit);
    }
    let prefix = &iccid[..7.min(iccid.len())];
    if !SUPER_SIM_PREFIXES.contains(&prefix) {
        warnings.push(Warning::IccidPrefix(prefix.to_string()));
    }
    warnings
}

/// Soft checks of a code that passed [`check_code`].
pub(crate) fn code_warnings(code: &str) -> Vec<Warning> {
    if code.bytes().any(|b| b.is_ascii_lowercase()) {
        vec![Warning::CodeLowercase]
    } else {
        Vec::new()
    }
}

/// The Luhn check over all digits, the last being the check digit.
pub fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b.wrapping_sub(b'0'));
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A 64-bit key for an ICCID that passed [`check_iccid`], for the input dedupe map. Such an
/// ICCID starts `89`, so what follows is under 10^18 (20 digits) or 10^17 (19 digits); one
/// more bit keeps the two lengths apart. Exact, so no two ICCIDs share a key, and half the
/// size of a `u128`, which matters with a million rows.
pub fn checked_iccid_key(iccid: &str) -> Option<u64> {
    check_iccid(iccid).ok()?;
    let rest: u64 = iccid[2..].parse().ok()?;
    let twenty_digits = u64::from(iccid.len() == 20) << 63;
    Some(rest | twenty_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iccid_normalisation_and_hard_checks() {
        let cases: &[(&str, Result<&str, Invalid>)] = &[
            ("89883070000123456789", Ok("89883070000123456789")),
            ("8988307000012345678", Ok("8988307000012345678")),
            ("8988 3070 0001 2345 6789", Ok("89883070000123456789")),
            ("8988-3070-0001-2345-6789", Ok("89883070000123456789")),
            (
                "8988\u{a0}3070\u{2011}0001 2345 6789",
                Ok("89883070000123456789"),
            ),
            (" 89883070000123456789 ", Ok("89883070000123456789")),
            ("8988307000012345678F", Ok("8988307000012345678")),
            ("8988 3070 0001 2345 678f", Ok("8988307000012345678")),
            ("\u{feff}89883070000123456789", Ok("89883070000123456789")),
            ("898830700001234567", Err(Invalid::IccidLength(18))),
            ("898830700001234567890", Err(Invalid::IccidLength(21))),
            (
                "8988307000012345678FF",
                Err(Invalid::IccidNotDigits {
                    found: 'F',
                    position: 20,
                }),
            ),
            (
                "8988307000012345678X",
                Err(Invalid::IccidNotDigits {
                    found: 'X',
                    position: 20,
                }),
            ),
            (
                "8988-3070-00O1-2345-678",
                Err(Invalid::IccidNotDigits {
                    found: 'O',
                    position: 11,
                }),
            ),
            (
                "8988307000012345678٣",
                Err(Invalid::IccidNotDigits {
                    found: '٣',
                    position: 20,
                }),
            ),
            ("", Err(Invalid::IccidEmpty)),
            ("F", Err(Invalid::IccidEmpty)),
            ("8.98831E+19", Err(Invalid::IccidScientific)),
            ("12345678901234567890", Err(Invalid::IccidPrefix)),
            ("0898830700001234567", Err(Invalid::IccidPrefix)),
        ];
        for (raw, expected) in cases {
            let iccid = normalize_iccid(raw);
            let got = check_iccid(&iccid).map(|()| iccid.as_str());
            assert_eq!(&got, &expected.clone(), "input {raw:?}");
            if let Err(invalid) = got {
                assert_eq!(invalid.column(), Column::Iccid);
            }
        }
    }

    #[test]
    fn code_hard_checks() {
        let cases: &[(&str, Result<(), Invalid>)] = &[
            ("H3LL0W0RLD", Ok(())),
            ("h3ll0w0rld", Ok(())),
            ("0123456789", Ok(())),
            ("H3LL0W0RL", Err(Invalid::CodeLength(9))),
            ("H3LL0W0RLDX", Err(Invalid::CodeLength(11))),
            ("H3LL0-0RLD", Err(Invalid::CodeCharacters)),
            ("H3LL0 0RLD", Err(Invalid::CodeCharacters)),
            ("ÉBCDEFGHIJ", Err(Invalid::CodeCharacters)),
            ("", Err(Invalid::CodeEmpty)),
        ];
        for (code, expected) in cases {
            assert_eq!(&check_code(code), expected, "code {code:?}");
        }
    }

    #[test]
    fn soft_checks() {
        let cases: &[(&str, &[Warning])] = &[
            // The API's own example: a known prefix, but it fails Luhn.
            ("89883070000123456789", &[Warning::IccidCheckDigit]),
            ("89883070000123456780", &[]),
            ("89103920000000771942", &[]),
            ("8988323000000000008", &[]),
            (
                "89012345678901234567",
                &[Warning::IccidPrefix(String::new())],
            ),
        ];
        for (iccid, expected) in cases {
            let got = iccid_warnings(iccid);
            let kinds = |w: &[Warning]| w.iter().map(std::mem::discriminant).collect::<Vec<_>>();
            if let [Warning::IccidPrefix(_)] = expected {
                assert!(
                    got.contains(&Warning::IccidPrefix("8901234".into())),
                    "{iccid}: {got:?}"
                );
            } else {
                assert_eq!(kinds(&got), kinds(expected), "{iccid}: {got:?}");
            }
        }
        assert_eq!(code_warnings("h3ll0W0RLD"), [Warning::CodeLowercase]);
        assert!(code_warnings("H3LL0W0RLD").is_empty());
        assert!(code_warnings("0123456789").is_empty());
    }

    #[test]
    fn luhn_table() {
        for (digits, ok) in [
            ("79927398713", true),
            ("79927398710", false),
            ("89883070000123456780", true),
            ("89883070000123456789", false),
            ("0", true),
        ] {
            assert_eq!(luhn_ok(digits), ok, "{digits}");
        }
    }

    #[test]
    fn reasons_never_quote_the_code() {
        for code in ["SECRET-123", "SECRETCODE1", "secretcode"] {
            let mut reasons: Vec<String> = check_code(code)
                .err()
                .iter()
                .map(ToString::to_string)
                .collect();
            reasons.extend(code_warnings(code).iter().map(ToString::to_string));
            assert!(!reasons.is_empty(), "{code}");
            for reason in reasons {
                assert!(!reason.to_lowercase().contains("secret"), "{reason}");
            }
        }
    }

    #[test]
    fn checked_keys_are_exact_and_only_for_checked_iccids() {
        let key = |s| checked_iccid_key(s);
        assert_ne!(key("8900000000000000001"), key("89000000000000000001"));
        assert_ne!(key("89999999999999999999"), key("8999999999999999999"));
        assert_ne!(key("89883070000123456780"), key("89883070000123456781"));
        assert_eq!(key("89883070000123456780"), key("89883070000123456780"));
        assert_eq!(key("12345678901234567890"), None);
        assert_eq!(key("8988"), None);
    }
}
