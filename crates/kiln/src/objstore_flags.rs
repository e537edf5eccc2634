//! `--objstore.config-file` / `--objstore.config`: where a bucket is, as every Thanos
//! component that touches one takes it (the server's shipper, `kiln tools bucket`).

use std::path::PathBuf;

use anyhow::Context;

/// The bucket flags, with Thanos's names.
#[derive(clap::Args)]
pub(crate) struct ObjstoreFlags {
    /// Thanos's bucket configuration file (objstore.yml): FILESYSTEM, S3, GCS or AZURE,
    /// with `$(VAR)` and `${VAR}` expanded from the environment.
    #[arg(
        long = "objstore.config-file",
        conflicts_with = "objstore_config",
        global = true
    )]
    objstore_config_file: Option<PathBuf>,
    /// The bucket configuration as YAML text, instead of a file.
    #[arg(long = "objstore.config", global = true)]
    objstore_config: Option<String>,
}

impl ObjstoreFlags {
    /// The bucket configuration, or `None` when neither flag is given.
    pub(crate) fn bucket_config(&self) -> anyhow::Result<Option<kiln_objstore::BucketConfig>> {
        let (text, origin) = match (&self.objstore_config_file, &self.objstore_config) {
            (Some(path), _) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                path.display().to_string(),
            ),
            (None, Some(text)) => (text.clone(), "--objstore.config".to_owned()),
            (None, None) => return Ok(None),
        };
        let config = kiln_objstore::parse(&text)
            .with_context(|| format!("bucket configuration {origin}"))?;
        Ok(Some(config))
    }

    /// The bucket the flags name; an error when they name none.
    pub(crate) fn bucket(&self) -> anyhow::Result<kiln_objstore::Bucket> {
        let config = self.bucket_config()?.ok_or_else(|| {
            anyhow::anyhow!("no bucket: give --objstore.config-file or --objstore.config")
        })?;
        kiln_objstore::Bucket::from_config(&config).context("setting up the bucket")
    }

    pub(crate) fn flag_values(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "objstore.config-file",
                self.objstore_config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            // The inline text may hold credentials: only whether it was given shows.
            (
                "objstore.config",
                if self.objstore_config.is_some() {
                    kiln_config::SECRET_PLACEHOLDER.to_owned()
                } else {
                    String::new()
                },
            ),
        ]
    }
}
