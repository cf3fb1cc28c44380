//! One ACME order, from the new order to the certificate: sets up the
//! chosen challenge for each name, waits for the server's validation,
//! finalizes with a fresh key and downloads the chain.
//!
//! Owns the RFC 8555 order flow and turning the server's problem documents
//! into errors that name the failed name and challenge. Must not touch the
//! cache or the resolver.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
};

use super::challenge::{alpn_cert, Challenges};
use super::{AcmeError, ChallengeKind};

/// Validation and issuance normally take seconds; a busy CA gets longer.
fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .backoff(1.5)
        .timeout(Duration::from_secs(120))
}

fn order_err(e: instant_acme::Error) -> AcmeError {
    AcmeError::Order(e.to_string())
}

/// Orders a certificate for `names`; Ok is the PEM chain and the PEM key.
pub async fn run(
    account: &Account,
    names: &[String],
    kind: ChallengeKind,
    challenges: &Challenges,
) -> Result<(String, String), AcmeError> {
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(order_err)?;
    prepare(&mut order, kind, challenges).await?;
    let status = order.poll_ready(&retry()).await.map_err(order_err)?;
    if status != OrderStatus::Ready {
        return Err(failure(&mut order, kind).await);
    }
    let key = order.finalize().await.map_err(order_err)?;
    let chain = order.poll_certificate(&retry()).await.map_err(order_err)?;
    Ok((chain, key))
}

/// Publishes the answer of each pending authorization and tells the
/// server to validate it.
async fn prepare(
    order: &mut Order,
    kind: ChallengeKind,
    challenges: &Challenges,
) -> Result<(), AcmeError> {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(order_err)?;
        if authz.status == AuthorizationStatus::Valid {
            continue; // validated recently: the CA reuses it
        }
        let name = authz.identifier().to_string();
        let Some(mut ch) = authz.challenge(kind.acme_type()) else {
            return Err(AcmeError::NoChallenge(kind.name(), name));
        };
        let key_auth = ch.key_authorization();
        match kind {
            ChallengeKind::Http01 => {
                challenges.set_http(ch.token.clone(), key_auth.as_str().to_string())
            }
            ChallengeKind::TlsAlpn01 => {
                let cert = alpn_cert(&name, key_auth.digest().as_ref())
                    .map_err(AcmeError::ChallengeCert)?;
                challenges.set_tls(name.clone(), Arc::new(cert));
            }
        }
        ch.set_ready().await.map_err(|e| AcmeError::Challenge {
            kind: kind.name(),
            name: name.clone(),
            detail: e.to_string(),
        })?;
    }
    Ok(())
}

/// Why an order became invalid: the first failed challenge's problem.
async fn failure(order: &mut Order, kind: ChallengeKind) -> AcmeError {
    let mut authzs = order.authorizations();
    while let Some(Ok(mut authz)) = authzs.next().await {
        let name = authz.identifier().to_string();
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        if let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
            return AcmeError::Challenge {
                kind: kind.name(),
                name,
                detail: problem.to_string(),
            };
        }
    }
    AcmeError::Order("the order became invalid without a reason".into())
}
