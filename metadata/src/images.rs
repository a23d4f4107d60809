//! Images in the metadata database: `obj\0<ns>\0images\0<name>`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::filters::{self, Adaptor};
use crated_core::images::{Image, ImageStore};
use crated_core::{labels, Namespace, Result};
use serde::{Deserialize, Serialize};

use crate::db::{decode, encode};
use crate::records::{non_empty, set_entry};
use crate::{keys, Db, Error};

pub(crate) const KIND: &str = "images";

#[derive(Serialize, Deserialize)]
struct Record {
    labels: BTreeMap<String, String>,
    media_type: String,
    digest: String,
    size: u64,
    annotations: BTreeMap<String, String>,
    created_at: SystemTime,
    updated_at: SystemTime,
}

impl Record {
    fn of(image: &Image) -> Self {
        Self {
            labels: non_empty(&image.labels),
            media_type: image.target.media_type.clone(),
            digest: image.target.digest.to_string(),
            size: image.target.size,
            annotations: image.target.annotations.clone(),
            created_at: image.created_at,
            updated_at: image.updated_at,
        }
    }

    fn into_image(self, name: String) -> Result<Image> {
        Ok(Image {
            name,
            labels: self.labels,
            target: Descriptor {
                media_type: self.media_type,
                digest: Digest::parse(&self.digest)?,
                size: self.size,
                annotations: self.annotations,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn key(ns: &Namespace, name: &str) -> Vec<u8> {
    keys::object(ns.as_str(), KIND, &[name])
}

fn not_found(ns: &Namespace, name: &str) -> Error {
    Error::ImageNotFound {
        namespace: ns.to_string(),
        name: name.to_owned(),
    }
}

fn validate(image: &Image) -> Result<()> {
    if image.name.is_empty() {
        return Err(Error::ImageNameEmpty.into());
    }
    if image.name.contains('\0') {
        return Err(Error::ImageNameNul {
            name: image.name.clone(),
        }
        .into());
    }
    labels::validate_all(&image.labels).map_err(|e| e.context("image.Labels"))?;
    image.target.validate_target()
}

struct Fields<'a>(&'a Image);

impl Adaptor for Fields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        let image = self.0;
        match path {
            ["name"] => Some(image.name.clone()),
            ["target", "digest"] => Some(image.target.digest.to_string()),
            ["target", "mediatype"] => {
                Some(image.target.media_type.clone()).filter(|s| !s.is_empty())
            }
            ["labels", key @ ..] => filters::map_value(&image.labels, key),
            ["annotations", key @ ..] => filters::map_value(&image.target.annotations, key),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl ImageStore for Db {
    async fn get(&self, ns: &Namespace, name: &str) -> Result<Image> {
        let raw = self
            .read(|tx| tx.get(&key(ns, name)))?
            .ok_or_else(|| not_found(ns, name))?;
        decode::<Record>(&format!("image {name:?}"), &raw)?.into_image(name.to_owned())
    }

    async fn list(&self, ns: &Namespace, filter_strings: &[String]) -> Result<Vec<Image>> {
        let filter = filters::parse_all(filter_strings)?;
        let prefix = keys::objects_of(ns.as_str(), KIND);
        let mut out = Vec::new();
        self.read(|tx| {
            tx.visit(&prefix, |k, raw| {
                let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let image = decode::<Record>(&format!("image {name:?}"), raw)?.into_image(name)?;
                if filter.matches(&Fields(&image)) {
                    out.push(image);
                }
                Ok(())
            })
        })?;
        Ok(out)
    }

    async fn create_dated(
        &self,
        ns: &Namespace,
        mut image: Image,
        epoch: Option<SystemTime>,
    ) -> Result<Image> {
        validate(&image)?;
        let now = epoch.unwrap_or_else(SystemTime::now);
        image.created_at = now;
        image.updated_at = now;
        image.labels = non_empty(&image.labels);
        self.write(|tx| {
            let k = key(ns, &image.name);
            if tx.get(&k)?.is_some() {
                return Err(Error::ImageExists {
                    name: image.name.clone(),
                }
                .into());
            }
            tx.ensure_namespace(ns)?;
            tx.put(
                k,
                encode(&format!("image {:?}", image.name), &Record::of(&image))?,
            );
            Ok(image.clone())
        })
    }

    async fn update_dated(
        &self,
        ns: &Namespace,
        image: Image,
        fieldpaths: &[String],
        epoch: Option<SystemTime>,
    ) -> Result<Image> {
        if image.name.is_empty() {
            return Err(Error::ImageNameEmpty.into());
        }
        self.write(|tx| {
            let k = key(ns, &image.name);
            let raw = tx.get(&k)?.ok_or_else(|| not_found(ns, &image.name))?;
            let mut updated = decode::<Record>(&format!("image {:?}", image.name), &raw)?
                .into_image(image.name.clone())?;
            let created_at = updated.created_at;
            if fieldpaths.is_empty() {
                updated = image.clone();
            }
            for path in fieldpaths {
                if let Some(label) = path.strip_prefix("labels.") {
                    set_entry(&mut updated.labels, &image.labels, label);
                } else if let Some(annotation) = path.strip_prefix("annotations.") {
                    set_entry(
                        &mut updated.target.annotations,
                        &image.target.annotations,
                        annotation,
                    );
                } else {
                    match path.as_str() {
                        "labels" => updated.labels = non_empty(&image.labels),
                        "target" => updated.target = image.target.clone(),
                        "annotations" => {
                            updated.target.annotations = image.target.annotations.clone()
                        }
                        _ => {
                            return Err(Error::ImageField {
                                name: image.name.clone(),
                                path: path.clone(),
                            }
                            .into())
                        }
                    }
                }
            }
            updated.labels = non_empty(&updated.labels);
            validate(&updated)?;
            updated.created_at = created_at;
            updated.updated_at = epoch.unwrap_or_else(SystemTime::now);
            tx.put(
                k,
                encode(&format!("image {:?}", image.name), &Record::of(&updated))?,
            );
            Ok(updated)
        })
    }

    async fn delete(&self, ns: &Namespace, name: &str, _sync: bool) -> Result<()> {
        self.write(|tx| {
            let k = key(ns, name);
            if tx.get(&k)?.is_none() {
                return Err(not_found(ns, name).into());
            }
            tx.delete(k);
            tx.mark_dirty();
            Ok(())
        })
    }
}
