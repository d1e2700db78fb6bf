//! Linked tenants without QR round trips: each tenant gets fresh creds, the simulator links a
//! companion with their public keys ([`crate::sim::Sim::provision_companion`]), the tenant
//! verifies the returned identity exactly as after a scan ([`adv::verify_pair_success`]) and
//! its creds go straight into the store (through [`host::persist`](crate::host::persist), the
//! one core↔store conversion), under a lease that is released again.
//!
//! Bench tooling only; never used by the gateway.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use rand::{RngCore as _, SeedableRng as _};

use crate::host::persist;
use crate::sim::{CompanionKeys, Server};
use crate::store::model::LinkState;
use crate::store::{Delta, DeltaBatch, Store, TenantStatus};
use crate::types::TenantId;
use crate::wa::client as wa;
use crate::wa::pair::adv;

/// Holder id the provisioning writes under (released at once).
const HOLDER: &str = "staylinked-bench-provision";

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The simulator refused or stopped.
    #[error("simulator refused tenant {tenant}: {detail}")]
    Sim {
        /// The tenant.
        tenant: String,
        /// What went wrong.
        detail: String,
    },
    /// The returned identity did not verify (a simulator bug).
    #[error("identity for tenant {tenant} did not verify")]
    Identity {
        /// The tenant.
        tenant: String,
        /// The check that failed.
        #[source]
        source: adv::AdvError,
    },
    /// The store refused a write.
    #[error("store write for tenant {tenant} failed")]
    Store {
        /// The tenant.
        tenant: String,
        /// The store error.
        #[source]
        source: crate::store::StoreError,
    },
    /// A generated id was invalid (a bench bug).
    #[error("invalid tenant id {0:?}")]
    BadId(String),
}

/// One provisioned tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Tenant id (`bench-00042`).
    pub id: TenantId,
    /// Phone digits of its simulated account.
    pub phone: String,
}

/// The phone number of bench tenant `i` (`prefix` + 7 digits).
pub fn phone(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:07}")
}

/// Provisions `n` linked tenants (`bench-00000`…) into `store` and the simulator,
/// `concurrency` at a time.
///
/// # Errors
/// The first [`ProvisionError`].
pub async fn provision(
    sim: &Server,
    store: &Arc<dyn Store>,
    n: usize,
    phone_prefix: &str,
    concurrency: usize,
) -> Result<Vec<Tenant>, ProvisionError> {
    let results: Vec<Result<Tenant, ProvisionError>> = futures::stream::iter(0..n)
        .map(|i| provision_one(sim, store, i, phone_prefix))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut tenants = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    tenants.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    Ok(tenants)
}

async fn provision_one(
    sim: &Server,
    store: &Arc<dyn Store>,
    i: usize,
    phone_prefix: &str,
) -> Result<Tenant, ProvisionError> {
    let id_text = format!("bench-{i:05}");
    let id = TenantId::new(&id_text).map_err(|_| ProvisionError::BadId(id_text.clone()))?;
    let phone = phone(phone_prefix, i);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut creds = wa::Creds::generate(&mut rng);
    let keys = CompanionKeys {
        noise_pub: *creds.noise_key.public(),
        identity_pub: *creds.identity_key.public(),
        adv_secret: *creds.adv_secret,
    };
    let ph = phone.clone();
    let provisioned = sim
        .with_sim(move |s, now| s.provision_companion(now, &ph, "Bench", &keys, 50))
        .await
        .map_err(|e| ProvisionError::Sim { tenant: id_text.clone(), detail: e.to_string() })?
        .map_err(|e| ProvisionError::Sim { tenant: id_text.clone(), detail: e.to_string() })?;
    let mut random = [0u8; 64];
    rng.fill_bytes(&mut random);
    let verified = adv::verify_pair_success(
        &provisioned.device_identity,
        &creds.adv_secret,
        creds.identity_key.private(),
        &random,
    )
    .map_err(|source| ProvisionError::Identity { tenant: id_text.clone(), source })?;
    creds.me = Some(wa::Me {
        jid: provisioned.device_jid.clone(),
        lid: Some(provisioned.device_lid.clone()),
        account: verified.account,
        account_key: verified.account_key,
        platform: Some(provisioned.platform.clone()),
    });
    let store_err = |source| ProvisionError::Store { tenant: id_text.clone(), source };
    let lease = store.acquire_lease(&id, HOLDER, Duration::from_secs(30)).await.map_err(store_err)?;
    let batch = DeltaBatch::new().with(Delta::CredsPut(Box::new(persist::creds_to_store(&creds))));
    store.commit(&id, lease.fence(), &batch).await.map_err(store_err)?;
    store.release_lease(&id, &lease).await.map_err(store_err)?;
    let now = crate::host::clock::unix_ms();
    let status = TenantStatus {
        state: LinkState::Connected,
        me: Some(provisioned.device_jid.clone()),
        linked_at: Some(now),
        devices_registered: vec![provisioned.device_jid],
        updated_at: now,
        ..TenantStatus::default()
    };
    // The status doc carries the lease: read-modify-write keeps the released lease intact.
    store.write_status(&id, &status).await.map_err(store_err)?;
    Ok(Tenant { id, phone })
}
