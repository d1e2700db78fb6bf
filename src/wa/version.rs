//! The WhatsApp Web client version the companion announces (`ClientPayload.userAgent.appVersion`,
//! and its MD5 as the registration `buildHash`), the browser-like device name shown in the
//! phone's linked-devices list, and the extraction of `client_revision` from WA Web's `sw.js`.
//!
//! Pure values and parsers; the fetch of `sw.js` is the host's job.

use std::fmt;
use std::str::FromStr;

use md5::Digest as _;

use crate::wa::proto::device_props::PlatformType;

/// A WA Web version `primary.secondary.tertiary` (today always `2.3000.N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaVersion(pub [u32; 3]);

impl WaVersion {
    /// The default: whatsmeow's `store/clientpayload.go` `waVersion` at tulir/whatsmeow@33cfac5
    /// (2026-08). Bump it at every release from the newest whatsmeow or WA Web `sw.js`.
    pub const DEFAULT: Self = Self([2, 3000, 1_045_649_367]);

    /// The version WA Web `client_revision` `rev` stands for (`2.3000.rev`).
    pub fn from_revision(rev: u32) -> Self {
        Self([2, 3000, rev])
    }

    /// `buildHash` of the registration payload: MD5 of the dotted version string.
    pub fn build_hash(&self) -> [u8; 16] {
        md5::Md5::digest(self.to_string().as_bytes()).into()
    }
}

impl Default for WaVersion {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for WaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0[0], self.0[1], self.0[2])
    }
}

/// A version string is not `P.S.T` with three decimal numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a WhatsApp Web version: expected three dot-separated numbers like 2.3000.1045649367"
)]
pub struct VersionError {
    /// The rejected text (truncated).
    pub input: String,
}

impl FromStr for WaVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError { input: s.chars().take(40).collect() };
        let mut parts = s.trim().split('.');
        let mut out = [0u32; 3];
        for o in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            *o = p.parse().map_err(|_| bad())?;
        }
        if parts.next().is_some() || out[0] == 0 || out[2] == 0 {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl serde::Serialize for WaVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WaVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `client_revision` number in the body of WA Web's `sw.js` (it appears as
/// `"client_revision":N`, possibly with escaped quotes). `None` when absent or not a number.
pub fn client_revision_from_sw_js(body: &str) -> Option<u32> {
    const KEY: &str = "client_revision";
    let mut rest = body;
    while let Some(at) = rest.find(KEY) {
        rest = &rest[at + KEY.len()..];
        let tail = rest.trim_start_matches(['\\', '"', '\'']).trim_start();
        let Some(tail) = tail.strip_prefix(':') else { continue };
        let tail = tail.trim_start();
        let digits: &str = &tail[..tail.bytes().take_while(u8::is_ascii_digit).count()];
        if let Ok(n) = digits.parse::<u32>()
            && n > 0
        {
            return Some(n);
        }
    }
    None
}

/// The name the phone shows for this companion in its linked-devices list: a browser and an
/// OS, written `Browser (OS)` (e.g. `Chrome (Linux)`). On the wire the OS goes into
/// `DeviceProps.os` and the browser into `DeviceProps.platformType`, as WA Web and the
/// reference clients send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceName {
    /// `DeviceProps.os`.
    pub os: String,
    /// `DeviceProps.platformType`.
    pub platform: PlatformType,
}

impl DeviceName {
    /// The default: `Chrome (Linux)`.
    pub fn default_name() -> Self {
        Self { os: "Linux".into(), platform: PlatformType::Chrome }
    }

    /// The browser word of `platform` (as in `Chrome (Linux)`).
    pub fn browser(&self) -> &'static str {
        BROWSERS.iter().find(|(_, p)| *p == self.platform).map_or("Chrome", |(n, _)| *n)
    }
}

impl Default for DeviceName {
    fn default() -> Self {
        Self::default_name()
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.browser(), self.os)
    }
}

const BROWSERS: [(&str, PlatformType); 6] = [
    ("Chrome", PlatformType::Chrome),
    ("Firefox", PlatformType::Firefox),
    ("Safari", PlatformType::Safari),
    ("Edge", PlatformType::Edge),
    ("Opera", PlatformType::Opera),
    ("Desktop", PlatformType::Desktop),
];

/// A device name is not `Browser (OS)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a device name: expected `Browser (OS)` with Browser one of Chrome, Firefox, Safari, Edge, Opera, Desktop and a non-empty OS of at most 40 characters, e.g. `Chrome (Linux)`"
)]
pub struct DeviceNameError {
    /// The rejected text (truncated).
    pub input: String,
}

impl FromStr for DeviceName {
    type Err = DeviceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DeviceNameError { input: s.chars().take(60).collect() };
        let t = s.trim();
        let (browser, rest) = t.split_once('(').ok_or_else(bad)?;
        let os = rest.strip_suffix(')').ok_or_else(bad)?.trim();
        let browser = browser.trim();
        let platform = BROWSERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(browser))
            .map(|(_, p)| *p)
            .ok_or_else(bad)?;
        if os.is_empty()
            || os.chars().count() > 40
            || os.contains(['(', ')'])
            || os.chars().any(char::is_control)
        {
            return Err(bad());
        }
        Ok(Self { os: os.to_owned(), platform })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Versions parse from `P.S.T` only; the error names the expected form.
    #[test]
    fn version_parsing() {
        assert_eq!("2.3000.1045649367".parse::<WaVersion>(), Ok(WaVersion([2, 3000, 1_045_649_367])));
        assert_eq!(" 2.3000.7 ".parse::<WaVersion>(), Ok(WaVersion([2, 3000, 7])));
        for bad in ["", "2.3000", "2.3000.1.4", "2.3000.x", "2.3000.-1", "2..5", "0.1.2", "2.3000.0", "auto"]
        {
            let e = bad.parse::<WaVersion>().unwrap_err();
            assert!(e.to_string().contains("2.3000."), "{bad}: {e}");
        }
        assert!(WaVersion([2, 3000, 5]) < WaVersion([2, 3000, 6]));
        assert!(WaVersion([2, 2999, 9]) < WaVersion([2, 3000, 1]));
        assert_eq!(WaVersion::DEFAULT.to_string(), "2.3000.1045649367");
    }

    /// `buildHash` is MD5 of the dotted string (the references' derivation).
    #[test]
    fn build_hash_is_md5_of_the_string() {
        // md5("2.3000.1045649367"), computed independently with coreutils' md5sum.
        assert_eq!(hex::encode(WaVersion::DEFAULT.build_hash()), "9fa53af9421567b114e33c9bb1ef7db2");
        assert_ne!(WaVersion([2, 3000, 1]).build_hash(), WaVersion::DEFAULT.build_hash());
    }

    /// `client_revision` is found in the shapes `sw.js` has carried; garbage gives `None`.
    #[test]
    fn sw_js_revision() {
        assert_eq!(
            client_revision_from_sw_js(r#"self.x={"client_revision":1046000001,"y":2}"#),
            Some(1_046_000_001)
        );
        assert_eq!(client_revision_from_sw_js(r#"a=\"client_revision\":  1012345678,"#), Some(1_012_345_678));
        assert_eq!(client_revision_from_sw_js("client_revision: 77"), Some(77));
        assert_eq!(client_revision_from_sw_js("client_revision_x\"client_revision\":5"), Some(5));
        assert_eq!(client_revision_from_sw_js("<html>nothing</html>"), None);
        assert_eq!(client_revision_from_sw_js("\"client_revision\":\"abc\""), None);
        assert_eq!(client_revision_from_sw_js("\"client_revision\":99999999999"), None);
        assert_eq!(client_revision_from_sw_js(""), None);
    }

    /// Device names parse from `Browser (OS)` and print back the same way.
    #[test]
    fn device_names() {
        let d: DeviceName = "Chrome (Linux)".parse().unwrap();
        assert_eq!(d, DeviceName::default());
        assert_eq!(d.to_string(), "Chrome (Linux)");
        let f: DeviceName = " firefox (Mac OS) ".parse().unwrap();
        assert_eq!((f.os.as_str(), f.platform), ("Mac OS", PlatformType::Firefox));
        assert_eq!(f.to_string(), "Firefox (Mac OS)");
        for bad in ["staylinked", "Chrome ()", "Netscape (Linux)", "Chrome (Linux", "Chrome (a(b))"] {
            assert!(bad.parse::<DeviceName>().is_err(), "{bad}");
        }
    }
}
