//! H.264 profiles as carried in `profile-level-id` (RFC 6184 §8.1): three bytes, `profile_idc`, `profile-iop`
//! (the constraint flags) and `level_idc`. Two ids name the same profile when their first two bytes fall in the
//! same row of RFC 6184 Table 5 (the rows browsers use); the level may differ (`level-asymmetry-allowed`).

use std::fmt;

/// An H.264 profile as offer/answer compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    ConstrainedHigh,
    High,
    PredictiveHigh444,
    /// A `profile_idc`/`profile-iop` pair outside the table: equal only to itself.
    Other(u8, u8),
}

/// `(profile_idc, iop mask, iop value, profile)`: the iop byte matches when `iop & mask == value`.
const TABLE: &[(u8, u8, u8, Profile)] = &[
    (0x42, 0b0100_1111, 0b0100_0000, Profile::ConstrainedBaseline),
    (0x4d, 0b1000_1111, 0b1000_0000, Profile::ConstrainedBaseline),
    (0x58, 0b1100_1111, 0b1100_0000, Profile::ConstrainedBaseline),
    (0x42, 0b0100_1111, 0b0000_0000, Profile::Baseline),
    (0x58, 0b1100_1111, 0b1000_0000, Profile::Baseline),
    (0x4d, 0b1010_1111, 0b0000_0000, Profile::Main),
    (0x64, 0b1111_1111, 0b0000_0000, Profile::High),
    (0x64, 0b1111_1111, 0b0000_1100, Profile::ConstrainedHigh),
    (0xf4, 0b1111_1111, 0b0000_0000, Profile::PredictiveHigh444),
];

/// A parsed `profile-level-id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileLevelId {
    pub profile: Profile,
    pub level_idc: u8,
}

impl ProfileLevelId {
    /// Parses six hex digits; `None` for anything else.
    pub fn parse(hex: &str) -> Option<ProfileLevelId> {
        let hex = hex.trim();
        if hex.len() != 6 || !hex.is_ascii() {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        let (idc, iop, level_idc) = (byte(0)?, byte(2)?, byte(4)?);
        let profile = TABLE
            .iter()
            .find(|(i, mask, value, _)| *i == idc && iop & mask == *value)
            .map_or(Profile::Other(idc, iop), |row| row.3);
        Some(ProfileLevelId { profile, level_idc })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Profile::ConstrainedBaseline => f.write_str("Constrained Baseline"),
            Profile::Baseline => f.write_str("Baseline"),
            Profile::Main => f.write_str("Main"),
            Profile::ConstrainedHigh => f.write_str("Constrained High"),
            Profile::High => f.write_str("High"),
            Profile::PredictiveHigh444 => f.write_str("High 4:4:4 Predictive"),
            Profile::Other(idc, iop) => write!(f, "profile_idc {idc:#04x}/iop {iop:#04x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(hex: &str) -> Profile {
        ProfileLevelId::parse(hex).unwrap().profile
    }

    #[test]
    fn browser_and_camera_ids() {
        // What Chromium offers, and what x264 and cameras write.
        assert_eq!(profile("42e01f"), Profile::ConstrainedBaseline);
        assert_eq!(profile("42c01f"), Profile::ConstrainedBaseline);
        assert_eq!(profile("42001f"), Profile::Baseline);
        assert_eq!(profile("4d001f"), Profile::Main);
        assert_eq!(profile("4d4029"), Profile::Main);
        assert_eq!(profile("4d8028"), Profile::ConstrainedBaseline);
        assert_eq!(profile("640028"), Profile::High);
        assert_eq!(profile("640c1f"), Profile::ConstrainedHigh);
        assert_eq!(profile("f4001f"), Profile::PredictiveHigh444);
        assert_eq!(profile("6e0028"), Profile::Other(0x6e, 0));
        assert_eq!(ProfileLevelId::parse("42e01f").unwrap().level_idc, 0x1f);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", "42e0", "42e01fff", "zze01f", "42é01"] {
            assert_eq!(ProfileLevelId::parse(bad), None, "{bad:?}");
        }
    }
}
