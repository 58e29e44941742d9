//! Screenshots a user attaches to a setup session, kept through the `object_store` crate: a
//! local folder by default (`[edge.setup] attachments_dir`), S3 (MinIO), GCS or a local
//! path by URL in production (`attachments_url`: `s3://bucket/prefix`, `gs://…`,
//! `file:///…`; credentials from the usual `AWS_*` / `GOOGLE_*` environment).
//!
//! Contract:
//! - only PNG, JPEG and WebP, recognised by their bytes (never the file name or the
//!   declared type), at most [`MAX_ATTACHMENT_BYTES`], at most
//!   [`MAX_ATTACHMENTS_PER_SESSION`] per session;
//! - content-addressed: an attachment's id is the SHA-256 of its bytes; the object is
//!   `attachments/<tenant>/<session>/<id>`, so the same image in two sessions is two
//!   objects, each deleted with its session, and no id of one session reaches another's;
//! - nothing a client sends becomes part of a path but a checked 64-hex id.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

use crate::error::SetupError;

/// Largest attachment.
pub const MAX_ATTACHMENT_BYTES: usize = 5 * 1024 * 1024;
/// Attachments one session may hold.
pub const MAX_ATTACHMENTS_PER_SESSION: usize = 10;

/// The image types accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Png,
    Jpeg,
    Webp,
}

impl ImageType {
    /// The type `bytes` are, by their signature.
    pub fn sniff(bytes: &[u8]) -> Option<ImageType> {
        if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
            Some(ImageType::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageType::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageType::Webp)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageType::Png => "image/png",
            ImageType::Jpeg => "image/jpeg",
            ImageType::Webp => "image/webp",
        }
    }

    pub fn parse(content_type: &str) -> Option<ImageType> {
        [ImageType::Png, ImageType::Jpeg, ImageType::Webp]
            .into_iter()
            .find(|t| t.content_type() == content_type)
    }
}

/// An attachment as its session lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRef {
    /// SHA-256 of the bytes, 64 lower-case hex digits.
    pub id: String,
    pub image: ImageType,
    pub bytes: u64,
    pub at: i64,
}

/// Whether `id` can be an attachment id (so it is safe in a path).
pub fn is_attachment_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where attachments are kept.
#[derive(Debug, Clone)]
pub struct Attachments {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl Attachments {
    /// The store of `url` (`s3://`, `gs://`, `file://`), else the local folder `dir`
    /// (created when missing).
    pub fn open(url: Option<&str>, dir: &str) -> Result<Attachments, SetupError> {
        let fail = |e: String| SetupError::Internal(format!("attachments store: {e}"));
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match url {
            Some(url) => {
                let url = url::Url::parse(url).map_err(|e| fail(e.to_string()))?;
                // The store's own keys, as its builders read them from the environment.
                let options = std::env::vars()
                    .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("GOOGLE_"))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v));
                let (store, prefix) =
                    object_store::parse_url_opts(&url, options).map_err(|e| fail(e.to_string()))?;
                (Arc::from(store), prefix)
            }
            None => {
                std::fs::create_dir_all(dir).map_err(|e| fail(format!("{dir}: {e}")))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| fail(e.to_string()))?;
                (Arc::new(store), Path::default())
            }
        };
        Ok(Attachments { store, prefix })
    }

    fn path(&self, tenant: &str, session: &str, id: &str) -> Path {
        self.session_prefix(tenant, session).child(id)
    }

    fn session_prefix(&self, tenant: &str, session: &str) -> Path {
        self.prefix
            .child("attachments")
            .child(tenant)
            .child(session)
    }

    /// Keep `bytes` (checked: an image, not too large) for `session`; its id and type.
    pub async fn put(
        &self,
        tenant: &str,
        session: &str,
        bytes: Vec<u8>,
    ) -> Result<(String, ImageType), SetupError> {
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(SetupError::AttachmentTooLarge {
                max: MAX_ATTACHMENT_BYTES,
            });
        }
        let image = ImageType::sniff(&bytes).ok_or(SetupError::NotAnImage)?;
        let id = hex::encode(Sha256::digest(&bytes));
        self.store
            .put(&self.path(tenant, session, &id), PutPayload::from(bytes))
            .await
            .map_err(|e| SetupError::Unavailable(format!("attachment not stored: {e}")))?;
        Ok((id, image))
    }

    /// The bytes of attachment `id` of `session`.
    pub async fn get(&self, tenant: &str, session: &str, id: &str) -> Result<Vec<u8>, SetupError> {
        if !is_attachment_id(id) {
            return Err(SetupError::UnknownAttachment(id.chars().take(64).collect()));
        }
        let object = self
            .store
            .get(&self.path(tenant, session, id))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => SetupError::UnknownAttachment(id.into()),
                other => SetupError::Unavailable(format!("attachment not read: {other}")),
            })?;
        let bytes = object
            .bytes()
            .await
            .map_err(|e| SetupError::Unavailable(format!("attachment not read: {e}")))?;
        Ok(bytes.to_vec())
    }

    /// Delete every attachment of `session` (it expired); how many.
    pub async fn delete_session(&self, tenant: &str, session: &str) -> Result<usize, SetupError> {
        self.delete_under(&self.session_prefix(tenant, session))
            .await
    }

    /// Delete every attachment of `tenant` (a privacy purge); how many.
    pub async fn delete_tenant(&self, tenant: &str) -> Result<usize, SetupError> {
        self.delete_under(&self.prefix.child("attachments").child(tenant))
            .await
    }

    async fn delete_under(&self, prefix: &Path) -> Result<usize, SetupError> {
        use futures::TryStreamExt;
        let objects: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| SetupError::Unavailable(format!("attachments not listed: {e}")))?;
        for object in &objects {
            self.store
                .delete(&object.location)
                .await
                .map_err(|e| SetupError::Unavailable(format!("attachment not deleted: {e}")))?;
        }
        Ok(objects.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0];
        assert_eq!(ImageType::sniff(&png), Some(ImageType::Png));
        assert_eq!(
            ImageType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageType::Jpeg)
        );
        assert_eq!(
            ImageType::sniff(b"RIFF\x10\0\0\0WEBPVP8 "),
            Some(ImageType::Webp)
        );
        assert_eq!(ImageType::sniff(b"GIF89a"), None);
        assert_eq!(ImageType::sniff(b"<svg xmlns="), None);
        assert!(is_attachment_id(&"a".repeat(64)));
        assert!(!is_attachment_id("../../etc/passwd"));
        assert!(!is_attachment_id(&"A".repeat(64)));
    }

    #[test]
    fn an_s3_url_names_the_bucket_and_the_prefix() {
        let store = Attachments::open(Some("s3://funnelhub-setup/attachments"), "unused")
            .expect("an S3 store");
        assert_eq!(
            store.path("acme", "s1", "ab").as_ref(),
            "attachments/attachments/acme/s1/ab"
        );
        assert!(Attachments::open(Some("ftp://x/y"), "unused").is_err());
    }

    #[tokio::test]
    async fn kept_read_back_and_deleted_with_the_session() {
        let dir = std::env::temp_dir().join(format!("fh-att-{}", uuid::Uuid::new_v4()));
        let store = Attachments::open(None, dir.to_str().expect("utf-8")).expect("store");
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        png.extend_from_slice(b"pixels");
        let (id, image) = store.put("acme", "s1", png.clone()).await.expect("kept");
        assert_eq!(image, ImageType::Png);
        assert_eq!(store.get("acme", "s1", &id).await.expect("read"), png);
        assert!(matches!(
            store.get("acme", "s2", &id).await,
            Err(SetupError::UnknownAttachment(_))
        ));
        assert!(matches!(
            store.put("acme", "s1", b"not an image".to_vec()).await,
            Err(SetupError::NotAnImage)
        ));
        assert_eq!(
            store.delete_session("acme", "s1").await.expect("deleted"),
            1
        );
        assert!(store.get("acme", "s1", &id).await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
