//! The `ClientPayload` sent in ClientFinish: registration (unpaired) or login (paired), with
//! the field values of protocol/03 §2 and 04 §3.1.
//!
//! Pure builders; no IO.

use prost::Message as _;

use super::ClientConfig;
use super::creds::Creds;
use crate::wa::proto::{self, client_payload as cp};

/// Storage quota announced in `historySyncConfig` (whatsmeow's value, 10 GiB).
const HISTORY_STORAGE_QUOTA_MB: u32 = 10_240;
/// Days of thumbnails the phone syncs (whatsmeow's value).
const HISTORY_THUMBNAIL_DAYS: u32 = 60;

fn user_agent(config: &ClientConfig) -> cp::UserAgent {
    let [primary, secondary, tertiary] = config.version.0;
    cp::UserAgent {
        platform: Some(cp::user_agent::Platform::Web as i32),
        app_version: Some(cp::user_agent::AppVersion {
            primary: Some(primary),
            secondary: Some(secondary),
            tertiary: Some(tertiary),
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
    proto::ClientPayload {
        user_agent: Some(user_agent(config)),
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
            let props = device_props(config);
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
                build_hash: Some(config.version.build_hash().to_vec()),
                device_props: Some(props.encode_to_vec()),
            });
        }
    }
    p.encode_to_vec()
}

/// The registration `DeviceProps`: device name (os + platform type), a companion version and
/// the history-sync capabilities both references announce (whatsmeow `store/clientpayload.go`
/// `DeviceProps`, Baileys `validate-connection` `getPlatformId`/`historySyncConfig`).
fn device_props(config: &ClientConfig) -> proto::DeviceProps {
    use proto::device_props::{AppVersion, HistorySyncConfig};
    proto::DeviceProps {
        os: Some(config.os_name.clone()),
        version: Some(AppVersion {
            primary: Some(0),
            secondary: Some(1),
            tertiary: Some(0),
            ..Default::default()
        }),
        platform_type: Some(config.platform as i32),
        require_full_sync: Some(false),
        history_sync_config: Some(HistorySyncConfig {
            storage_quota_mb: Some(HISTORY_STORAGE_QUOTA_MB),
            inline_initial_payload_in_e2ee_msg: Some(true),
            support_call_log_history: Some(true),
            support_bot_user_agent_chat_history: Some(true),
            support_cag_reactions_and_polls: Some(true),
            support_biz_hosted_msg: Some(true),
            support_recent_sync_chunk_message_count_tuning: Some(true),
            support_hosted_group_msg: Some(true),
            support_fbid_bot_chat_history: Some(true),
            support_message_association: Some(true),
            support_group_history: Some(true),
            thumbnail_sync_days_limit: Some(HISTORY_THUMBNAIL_DAYS),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use rand::SeedableRng as _;

    use super::*;
    use crate::wa::version::WaVersion;

    fn decode(creds: &Creds, config: &ClientConfig) -> proto::ClientPayload {
        proto::ClientPayload::decode(client_payload(creds, config).as_slice()).unwrap()
    }

    /// The registration payload carries the configured version, `buildHash = md5(version)`,
    /// the device name and the full `DeviceProps` (version, historySyncConfig).
    #[test]
    fn registration_payload_is_complete() {
        let creds = Creds::generate(&mut rand::rngs::StdRng::seed_from_u64(7));
        let config = ClientConfig {
            version: WaVersion([2, 3000, 1_050_000_001]),
            os_name: "Mac OS".into(),
            platform: proto::device_props::PlatformType::Firefox,
            ..ClientConfig::default()
        };
        let p = decode(&creds, &config);
        let v = p.user_agent.as_ref().and_then(|u| u.app_version.as_ref()).unwrap();
        assert_eq!((v.primary, v.secondary, v.tertiary), (Some(2), Some(3000), Some(1_050_000_001)));
        let reg = p.device_pairing_data.unwrap();
        // md5("2.3000.1050000001")
        let expected: [u8; 16] = md5::Digest::finalize(md5::Digest::chain_update(
            <md5::Md5 as md5::Digest>::new(),
            b"2.3000.1050000001",
        ))
        .into();
        assert_eq!(reg.build_hash.as_deref(), Some(expected.as_slice()));
        let props = proto::DeviceProps::decode(reg.device_props.unwrap().as_slice()).unwrap();
        assert_eq!(props.os.as_deref(), Some("Mac OS"));
        assert_eq!(props.platform_type, Some(proto::device_props::PlatformType::Firefox as i32));
        assert!(props.version.is_some());
        let h = props.history_sync_config.unwrap();
        assert_eq!(h.storage_quota_mb, Some(HISTORY_STORAGE_QUOTA_MB));
        assert_eq!(h.support_group_history, Some(true));
        assert_eq!(h.support_call_log_history, Some(true));
        assert_eq!(h.inline_initial_payload_in_e2ee_msg, Some(true));
    }

    /// The default config announces whatsmeow's current version as `Chrome (Linux)`, not the
    /// stale Baileys 6.7.21 default.
    #[test]
    fn default_version_and_name() {
        let creds = Creds::generate(&mut rand::rngs::StdRng::seed_from_u64(8));
        let p = decode(&creds, &ClientConfig::default());
        let v = p.user_agent.as_ref().and_then(|u| u.app_version.as_ref()).unwrap();
        assert_eq!(v.tertiary, Some(WaVersion::DEFAULT.0[2]));
        let reg = p.device_pairing_data.unwrap();
        assert_eq!(reg.build_hash.as_deref(), Some(WaVersion::DEFAULT.build_hash().as_slice()));
        let props = proto::DeviceProps::decode(reg.device_props.unwrap().as_slice()).unwrap();
        assert_eq!(props.os.as_deref(), Some("Linux"));
        assert_eq!(props.platform_type, Some(proto::device_props::PlatformType::Chrome as i32));
    }
}
