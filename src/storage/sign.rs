//! The SigV4 signer for the S3 requests opendal does not make itself (listing and aborting
//! multipart uploads, object lock): reqsign, the signer opendal uses, with the same credential
//! chain: the configured static keys, else the AWS environment, profile and instance metadata.

use reqsign_aws_v4::{
    Credential, DefaultCredentialProvider, RequestSigner, StaticCredentialProvider,
};
use reqsign_core::{Context, HttpSend, OsEnv, ProvideCredentialChain, Signer};

use crate::secret::Secret;

/// A signer for S3 in `region`; `http` fetches credentials that need a request (instance
/// metadata, STS).
pub(crate) fn signer(
    region: &str,
    access_key_id: Option<&str>,
    secret_access_key: Option<&Secret>,
    http: impl HttpSend,
) -> Signer<Credential> {
    let mut chain = ProvideCredentialChain::new().push(DefaultCredentialProvider::new());
    if let (Some(id), Some(secret)) = (access_key_id, secret_access_key) {
        chain = chain.push_front(StaticCredentialProvider::new(id, secret.expose()));
    }
    let ctx = Context::new()
        .with_file_read(reqsign_file_read_tokio::TokioFileRead)
        .with_env(OsEnv)
        .with_http_send(http);
    Signer::new(ctx, chain, RequestSigner::new("s3", region))
}
