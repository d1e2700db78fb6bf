//! The `ClientPayload` sent in ClientFinish: registration (unpaired) or login (paired), with
//! the field values of protocol/03 §2 and 04 §3.1.
//!
//! Pure builders; no IO.

use prost::Message as _;

use super::ClientConfig;
use super::creds::Creds;
use crate::wa::proto::{self, client_payload as cp};

/// WA Web version we announce (Baileys 6.7.21's bundled default).
const APP_VERSION: [u32; 3] = [2, 3000, 1_023_223_821];

fn user_agent() -> cp::UserAgent {
    cp::UserAgent {
        platform: Some(cp::user_agent::Platform::Web as i32),
        app_version: Some(cp::user_agent::AppVersion {
            primary: Some(APP_VERSION[0]),
            secondary: Some(APP_VERSION[1]),
            tertiary: Some(APP_VERSION[2]),
            ..Default::default()
        }),
        mcc: Some("000".into()),
        mnc: Some("000".into()),
        os_version: Some("0.1".into()),
        device: Some("Desktop".into()),
        os_build_number: Some("0.1".into()),
        release_channel: Some(cp::user_agent::ReleaseChannel::Release as i32),
        locale_language_iso_639_1: Some("en".into()),
        locale_country_iso_3166_1_alpha_2: Some("US".into()),
        ..Default::default()
    }
}

fn base(config: &ClientConfig) -> proto::ClientPayload {
    let _ = config;
    proto::ClientPayload {
        user_agent: Some(user_agent()),
        web_info: Some(cp::WebInfo {
            web_sub_platform: Some(cp::web_info::WebSubPlatform::WebBrowser as i32),
            ..Default::default()
        }),
        connect_type: Some(cp::ConnectType::WifiUnknown as i32),
        connect_reason: Some(cp::ConnectReason::UserActivated as i32),
        ..Default::default()
    }
}

/// The serialized payload for `creds`: login when paired, registration otherwise.
pub(crate) fn client_payload(creds: &Creds, config: &ClientConfig) -> Vec<u8> {
    let mut p = base(config);
    match &creds.me {
        Some(me) => {
            p.username = me.phone().parse().ok();
            p.device = Some(u32::from(me.device()));
            p.passive = Some(true);
            p.pull = Some(true);
            p.lid_db_migrated = Some(false);
        }
        None => {
            let props = proto::DeviceProps {
                os: Some(config.os_name.clone()),
                platform_type: Some(proto::device_props::PlatformType::Chrome as i32),
                require_full_sync: Some(false),
                ..Default::default()
            };
            let spk = &creds.signed_pre_key;
            p.passive = Some(false);
            p.pull = Some(false);
            p.device_pairing_data = Some(cp::DevicePairingRegistrationData {
                e_regid: Some(creds.registration_id.to_be_bytes().to_vec()),
                e_keytype: Some(vec![5]),
                e_ident: Some(creds.identity_key.public().to_vec()),
                e_skey_id: Some(spk.key.id.to_be_bytes()[1..].to_vec()),
                e_skey_val: Some(spk.key.key.public().to_vec()),
                e_skey_sig: Some(spk.signature.to_vec()),
                build_hash: None,
                device_props: Some(props.encode_to_vec()),
            });
        }
    }
    p.encode_to_vec()
}
