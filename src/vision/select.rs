//! The one place that picks an image encoder's runtime: every command (`run`, `classify`,
//! `embed-prompts`, `bench`) loads its encoder through [`load_image_encoder`] or
//! [`load_embedder`], so `--backend`, `--device` and `--ep` mean the same everywhere.
//! Execution providers given for tract are [`EncodeError::ProvidersNeedOrt`].

use crate::model::Bundle;
use crate::vision::encoder::{Backend, EncodeError, EncoderOptions, ImageEncoder, ImageGraph};
use crate::vision::tract::TractImageEncoder;
use crate::vision::{EmbedError, ImageEmbedder};

/// Loads an image encoder with the runtime and threads `options` name.
pub fn load_image_encoder(
    graph: &ImageGraph,
    options: &EncoderOptions,
) -> Result<Box<dyn ImageEncoder>, EncodeError> {
    match options.backend {
        Backend::Tract if options.ort.is_some() => Err(EncodeError::ProvidersNeedOrt {
            backend: Backend::Tract.as_str(),
        }),
        Backend::Tract => Ok(Box::new(TractImageEncoder::load_graph(
            graph,
            options.threads,
            options.device,
        )?)),
        #[cfg(feature = "ort")]
        Backend::Ort => Ok(Box::new(crate::vision::ort::OrtImageEncoder::load(
            graph,
            options.threads,
            options.ort_library.as_deref(),
            &options.ort.clone().unwrap_or_default(),
        )?)),
        #[cfg(not(feature = "ort"))]
        Backend::Ort => Err(EncodeError::NotCompiled {
            what: "onnxruntime",
            feature: "ort",
        }),
    }
}

/// A bundle's image tower with its preprocessing, on the runtime `options` name.
pub fn load_embedder(
    bundle: &Bundle,
    options: &EncoderOptions,
) -> Result<ImageEmbedder, EmbedError> {
    let encoder = load_image_encoder(&ImageGraph::of_bundle(bundle), options)?;
    ImageEmbedder::new((&bundle.manifest.image).into(), encoder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::encoder::OrtOptions;

    #[test]
    fn providers_with_tract_are_refused_before_any_file_is_read() {
        let graph = ImageGraph {
            path: "/nonexistent/image.onnx".into(),
            input: "pixel_values".into(),
            output: "image_embeds".into(),
            size: 224,
            dim: None,
        };
        let options = EncoderOptions {
            ort: Some(OrtOptions::default()),
            ..EncoderOptions::default()
        };
        let e = load_image_encoder(&graph, &options).err().unwrap();
        assert!(matches!(
            e,
            EncodeError::ProvidersNeedOrt { backend: "tract" }
        ));
        assert!(e.to_string().contains("--backend ort"), "{e}");
    }
}
