"""Data: embedded offline data sets, a TFDS adapter, deterministic checkpointable batching.

* :mod:`~bottleneck_jax.data.embedded`: scikit-learn's digits / breast-cancer / diabetes with
  seeded splits and scikit-image's bundled sample images, as :class:`ArrayDataset`;
  :func:`load_dataset` by name (``"tfds:<name>"`` too).
* :mod:`~bottleneck_jax.data.tfds`: ``tfds.data_source`` wrappers (no TensorFlow needed;
  tensorflow-datasets comes with the ``data`` extra and is imported lazily).
* :mod:`~bottleneck_jax.data.pipeline`: :func:`batches`, a grain iterator whose global batch
  sequence depends only on the data, batch size and seed (each process gets its slice), with
  exact ``get_state``/``set_state``; :func:`to_global` builds global ``jax.Array`` batches.
* :mod:`~bottleneck_jax.data.synthetic`: procedural data with exact ground-truth mutual
  information (:func:`correlated_gaussians`, the 12-bit set :func:`tishby12`) and exact discrete
  entropy / MI of probability tables.
* :mod:`~bottleneck_jax.data.smooth_images`: images of rectangles driven by Gaussian latents
  through a smooth injective map, so image pairs have an exactly known MI
  (:func:`rectangle_image_pairs`).
* :mod:`~bottleneck_jax.data.corpus`: a small generated retrieval corpus (texts, term counts,
  dense embeddings, metadata) with corpus-level questions and their exact answers
  (:func:`retrieval_corpus`, :func:`corpus_questions`).
* :mod:`~bottleneck_jax.data.concepts`: data with exact concept ground truth for concept
  bottleneck models (a fake CLIP space with known concept directions, sprite images with concept
  masks, two-slot co-occurrence images, confounded embeddings, a sparse dictionary, and
  breast-cancer as a tabular CBM).
* :mod:`~bottleneck_jax.data.packing`: best-fit-decreasing sequence packing with segment ids and
  positions (:func:`pack_sequences`) and the matching attention mask.
"""

from bottleneck_jax.data.arrays import ArrayDataset
from bottleneck_jax.data.concepts import (
    ConceptEmbeddings,
    ConceptSprites,
    ConfoundedEmbeddings,
    KohConcepts,
    SparseDictionary,
    TabularConcepts,
    TwoSlot,
    concept_embeddings,
    concept_sprites,
    confounded_embeddings,
    koh_concepts,
    load_breast_cancer_concepts,
    sparse_dictionary,
    two_slot,
)
from bottleneck_jax.data.corpus import (
    CorpusQuestion,
    RetrievalCorpus,
    corpus_questions,
    retrieval_corpus,
)
from bottleneck_jax.data.embedded import (
    DATASET_NAMES,
    SAMPLE_IMAGE_NAMES,
    load_breast_cancer,
    load_dataset,
    load_diabetes,
    load_digits,
    sample_image,
    sample_images,
)
from bottleneck_jax.data.packing import (
    PackedBatch,
    PackingStats,
    best_fit_decreasing,
    pack_sequences,
    packed_attention_mask,
)
from bottleneck_jax.data.pipeline import batches, to_global
from bottleneck_jax.data.smooth_images import (
    RectanglePairs,
    rectangle_coordinates,
    rectangle_image_pairs,
    rectangle_images,
)
from bottleneck_jax.data.synthetic import (
    AdditiveUniform,
    CorrelatedGaussians,
    Tishby12,
    additive_uniform,
    additive_uniform_mutual_information,
    correlated_gaussians,
    discrete_entropy,
    discrete_mutual_information,
    gaussian_mutual_information,
    tishby12,
)
from bottleneck_jax.data.tfds import load_tfds, source_to_arrays, tfds_source

__all__ = [
    "DATASET_NAMES",
    "SAMPLE_IMAGE_NAMES",
    "AdditiveUniform",
    "ArrayDataset",
    "ConceptEmbeddings",
    "ConceptSprites",
    "ConfoundedEmbeddings",
    "CorpusQuestion",
    "CorrelatedGaussians",
    "KohConcepts",
    "PackedBatch",
    "PackingStats",
    "SparseDictionary",
    "TabularConcepts",
    "RectanglePairs",
    "RetrievalCorpus",
    "Tishby12",
    "TwoSlot",
    "additive_uniform",
    "additive_uniform_mutual_information",
    "batches",
    "best_fit_decreasing",
    "concept_embeddings",
    "concept_sprites",
    "confounded_embeddings",
    "corpus_questions",
    "correlated_gaussians",
    "discrete_entropy",
    "discrete_mutual_information",
    "gaussian_mutual_information",
    "koh_concepts",
    "load_breast_cancer",
    "load_breast_cancer_concepts",
    "load_dataset",
    "load_diabetes",
    "load_digits",
    "load_tfds",
    "pack_sequences",
    "rectangle_coordinates",
    "rectangle_image_pairs",
    "rectangle_images",
    "retrieval_corpus",
    "packed_attention_mask",
    "sample_image",
    "sample_images",
    "source_to_arrays",
    "sparse_dictionary",
    "tfds_source",
    "tishby12",
    "to_global",
    "two_slot",
]
