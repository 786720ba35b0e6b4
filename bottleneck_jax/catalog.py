"""The catalogue: the 49 papers behind bottleneck_jax (plus the Deep VIB base method).

Each row has the paper's catalogue id, title and family exactly as the paper list gives
them, and for each method: its public functions (dotted paths), its module, its experiments and a
status that tells the truth:

* ``planned`` — nothing built yet;
* ``implemented`` — the functions exist and are tested against an independent reference;
* ``reproduced`` — implemented, and every experiment of the row held all its declared
  expectations in its last recorded run (``experiments/recorded_results.json``, written by
  ``bottleneck-jax reproduce --record``), a run that was neither quick nor custom, did not fail,
  and was judged by the expectations the experiment declares now (see :func:`record_problem`).

The status is computed, not declared: a row whose functions are listed is ``implemented`` only if
``tests`` (the test files that check it against independent references) are listed too, and
``reproduced`` only from recorded results.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

FAMILIES: tuple[str, ...] = (
    "information",
    "concepts",
    "quantize",
    "compression",
    "efficiency",
    "attention",
    "architecture",
    "objectives",
)
STATUSES: tuple[str, ...] = ("planned", "implemented", "reproduced")

RESULTS_PATH = Path(__file__).parent / "experiments" / "recorded_results.json"


@dataclasses.dataclass(frozen=True)
class Entry:
  """One catalogue row."""

  number: int  # row in papers.md (0 for base methods that are not one of the 49 papers)
  id: str
  family: str
  title: str
  listed: str
  module: str
  functions: tuple[str, ...] = ()
  experiments: tuple[str, ...] = ()
  tests: tuple[str, ...] = ()
  note: str = ""

  @property
  def file(self) -> str:
    """The method's implementation file, relative to the repository root
    (``bottleneck_jax/information/_vib.py``)."""
    return self.module.replace(".", "/") + ".py"

  @property
  def status(self) -> str:
    if not (self.functions and self.tests):
      return "planned"
    if self.experiments:
      results = recorded_results()
      if all(record_problem(e, results.get(e)) is None for e in self.experiments):
        return "reproduced"
    return "implemented"

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["status"] = self.status
    d["file"] = self.file
    for k in ("functions", "experiments", "tests"):
      d[k] = list(d[k])
    return d


def recorded_results() -> dict:
  """The last recorded experiment results (``{experiment: summary}``); empty if none."""
  try:
    text = RESULTS_PATH.read_text()
  except FileNotFoundError:
    return {}
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:  # never hide a damaged record: it decides the statuses
    raise ValueError(f"recorded_results: {RESULTS_PATH} is not valid JSON ({e}); rerun "
                     "`bottleneck-jax reproduce --all --record`") from None


def record_problem(name: str, record: dict | None) -> str | None:
  """Why the record of experiment ``name`` is not a reproduction; ``None`` when it is.

  A record counts only when the run did not fail, was neither quick nor custom, was judged by
  declared expectations (not a legacy verdict of ``run``), held every one of them, and those
  expectations are the ones the experiment declares now (a changed threshold needs a new run).
  """
  if not record:
    return "not recorded"
  if record.get("status") == "error":
    return f"the run failed: {record.get('error', 'unknown error')}"
  if record.get("quick") is not False:
    return "a quick run"
  recorded = record.get("expectations")
  if record.get("legacy") or not recorded:
    return "recorded before expectations were data: no per-expectation verdicts"
  if record.get("custom") is not False:
    return "a custom configuration"
  if record.get("expectation_held") is not True or not all(r.get("held") is True
                                                           for r in recorded):
    return "the expectations were missed"
  from bottleneck_jax.experiments import registry
  try:
    exp = registry.get(name)
  except ValueError:
    return "not a registered experiment"
  if [r.get("expectation") for r in recorded] != exp.describe_expectations(source=False):
    return "the declared expectations changed since the run was recorded"
  return None


def _P(number, id_, family, title, listed, **kw):
  module = kw.pop("module", f"bottleneck_jax.{family}._{id_.replace('-', '_')}")
  return Entry(number=number, id=id_, family=family, title=title, listed=listed, module=module,
               **kw)


# The 49 papers (ids, families and titles exactly as in shared/papers.md).
_PAPERS: list[Entry] = [
    _P(1, 'walloc', 'compression',
       'Learned Compression for Compressed Learning',
       'Dec 12, 2024'),
    _P(2, 'skintokens-fsq', 'quantize',
       'Skin Tokens: A Learned Compact Representation for Unified Autoregressive Rigging',
       'Feb 4'),
    _P(3, 'winner-init', 'architecture',
       'Spectral Bottleneck in Deep Neural Networks: Noise is All You Need',
       'Sep 9, 2025'),
    _P(4, 'sparton', 'efficiency',
       'Sparton: Fast and Memory-Efficient Triton Kernel for Learned Sparse Retrieval',
       'Mar 26'),
    _P(5, 'lpgnas', 'quantize',
       'Learned Low Precision Graph Neural Networks',
       'Sep 19, 2020'),
    _P(6, 'hib', 'information',
       'Bridging the Sim-to-Real Gap from the Information Bottleneck Perspective',
       'May 29, 2023'),
    _P(7, 'vq-logits', 'quantize',
       'VQ-Logits: Compressing the Output Bottleneck of Large Language Models via Vector Quantized Logits',
       'May 15, 2025'),
    _P(8, 'lexlip', 'efficiency',
       'LexLIP: Lexicon-Bottlenecked Language-Image Pre-Training for Large-Scale Image-Text Retrieval',
       'Feb 6, 2023'),
    _P(9, 'marag-r1', 'objectives',
       'MARAG-R1: Beyond Single Retriever via Reinforcement-Learned Multi-Tool Agentic Retrieval',
       'Oct 31, 2025'),
    _P(10, 'cvib', 'information',
       'Reducing Spurious Correlations for Aspect-Based Sentiment Analysis with Variational Information Bottleneck and Contrastive Learning',
       'Mar 5, 2023'),
    _P(11, 'cs-ib', 'information',
       'Cauchy-Schwarz Divergence Information Bottleneck for Regression',
       'Apr 27, 2024'),
    _P(12, 'sparse-cbm', 'concepts',
       'Sparse Concept Bottleneck Models: Gumbel Tricks in Contrastive Learning',
       'Apr 4, 2024'),
    _P(13, 'vpo', 'objectives',
       'Value-Incentivized Preference Optimization: A Unified Approach to Online and Offline RLHF',
       'May 29, 2024'),
    _P(14, 'ib-generalization', 'information',
       'How Does Information Bottleneck Help Deep Learning?',
       'May 30, 2023'),
    _P(15, 'ard-vae', 'compression',
       'ARD-VAE: A Statistical Formulation to Find the Relevant Latent Dimensions of Variational Autoencoders',
       'Jan 18, 2025'),
    _P(16, 'brl', 'objectives',
       'Balanced Representation Learning for Long-tailed Skeleton-based Action Recognition',
       'Aug 27, 2023'),
    _P(17, 'chi0', 'objectives',
       '$χ_{0}$: Resource-Aware Robust Manipulation via Taming Distributional Inconsistencies',
       'Mar 21'),
    _P(18, 'shc', 'architecture',
       'Beyond the Birkhoff Polytope: Spectral-Sphere-Constrained Hyper-Connections',
       'Mar 21'),
    _P(19, 'gpicl', 'architecture',
       'General-Purpose In-Context Learning by Meta-Learning Transformers',
       'Dec 8, 2022'),
    _P(20, 'dkvb', 'quantize',
       'Discrete Key-Value Bottleneck',
       'Jul 22, 2022'),
    _P(21, 'pcbm', 'concepts',
       'Post-hoc Concept Bottleneck Models',
       'May 30, 2022'),
    _P(22, 'labo', 'concepts',
       'Language in a Bottle: Language Model Guided Concept Bottlenecks for Interpretable Image Classification',
       'Nov 20, 2022'),
    _P(23, 'graph-rlearner', 'objectives',
       'The Final-Stage Bottleneck: A Systematic Dissection of the R-Learner for Network Causal Inference',
       'Nov 17, 2025'),
    _P(24, 'sae-data-selection', 'compression',
       'Task-Specific Data Selection for Instruction Tuning via Monosemantic Neuronal Activations',
       'Mar 19, 2025'),
    _P(25, 'kinetics', 'attention',
       'Kinetics: Rethinking Test-Time Scaling Laws',
       'Jun 5, 2025'),
    _P(26, 'cbm-input-features', 'concepts',
       'Can we Constrain Concept Bottleneck Models to Learn Semantically Meaningful Input Features?',
       'Feb 1, 2024'),
    _P(27, 'knobo', 'concepts',
       'A Textbook Remedy for Domain Shifts: Knowledge Priors for Medical Image Analysis',
       'May 23, 2024'),
    _P(28, 'adaptive-mi', 'information',
       'Adaptive Estimators Show Information Compression in Deep Neural Networks',
       'Feb 24, 2019'),
    _P(29, 'lossy-mi', 'information',
       'Information Bottleneck Analysis of Deep Neural Networks via Lossy Compression',
       'May 13, 2023'),
    _P(30, 'rettention', 'attention',
       'Re-ttention: Ultra Sparse Visual Generation via Attention Statistical Reshape',
       'May 28, 2025'),
    _P(31, 'wta-crs', 'efficiency',
       'Winner-Take-All Column Row Sampling for Memory Efficient Adaptation of Language Model',
       'May 24, 2023'),
    _P(32, 'editreward', 'objectives',
       'EditReward: A Human-Aligned Reward Model for Instruction-Guided Image Editing',
       'Sep 30, 2025'),
    _P(33, 'agentcpm-explore', 'objectives',
       'AgentCPM-Explore: Realizing Long-Horizon Deep Exploration for Edge-Scale Agents',
       'Feb 6'),
    _P(34, 'ecbm', 'concepts',
       'Energy-Based Concept Bottleneck Models: Unifying Prediction, Concept Intervention, and Probabilistic Interpretations',
       'Jan 25, 2024'),
    _P(35, 'cib-reasoning', 'information',
       'Reasoning as Compression: Unifying Budget Forcing via the Conditional Information Bottleneck',
       'Mar 9'),
    _P(36, 'chart-perception', 'objectives',
       'On the Perception Bottleneck of VLMs for Chart Understanding',
       'Mar 24, 2025'),
    _P(37, 'dn-cbm', 'concepts',
       'Discover-then-Name: Task-Agnostic Concept Bottlenecks via Automated Concept Discovery',
       'Jul 19, 2024'),
    _P(38, 'info-plane', 'information',
       'Opening the Black Box of Deep Neural Networks via Information',
       'Mar 2, 2017'),
    _P(39, 'codebook-features', 'quantize',
       'Codebook Features: Sparse and Discrete Interpretability for Neural Networks',
       'Oct 26, 2023'),
    _P(40, 'remix', 'objectives',
       'Squeeze the Soaked Sponge: Efficient Off-policy Reinforcement Finetuning for Large Language Model',
       'Jul 9, 2025'),
    _P(41, 'zipvl', 'attention',
       'ZipVL: Efficient Large Vision-Language Models with Dynamic Token Sparsification and KV Cache Compression',
       'Oct 11, 2024'),
    _P(42, 'chronicals', 'efficiency',
       'Chronicals: A High-Performance Framework for LLM Fine-Tuning with 3.51x Speedup over Unsloth',
       'Jan 5'),
    _P(43, 'bottlenecked-transformer', 'attention',
       'Bottlenecked Transformers: Periodic KV Cache Consolidation for Generalised Reasoning',
       'May 22, 2025'),
    _P(44, 'concept-metrics', 'concepts',
       'Concept-Based Explainable Artificial Intelligence: Metrics and Benchmarks',
       'Jan 31, 2025'),
    _P(45, 'hicra', 'objectives',
       'Emergent Hierarchical Reasoning in LLMs through Reinforcement Learning',
       'Sep 3, 2025'),
    _P(46, 'plasticity', 'objectives',
       'Revisiting Plasticity in Visual Reinforcement Learning: Data, Modules and Training Stages',
       'Oct 11, 2023'),
    _P(47, 'sl-cbm', 'concepts',
       'SL-CBM: Enhancing Concept Bottleneck Models with Semantic Locality for Better Interpretability',
       'Jan 19'),
    _P(48, 'bottlefit', 'compression',
       'BottleFit: Learning Compressed Representations in Deep Neural Networks for Effective and Efficient Split Computing',
       'Jan 7, 2022'),
    _P(49, 'bottleneck-sampling', 'architecture',
       'Training-free Diffusion Acceleration with Bottleneck Sampling',
       'Mar 24, 2025'),]

# Methods built so far: functions, experiments and the test files that check them.
_E = "bottleneck_jax.efficiency"
_O = "bottleneck_jax.ops"
_D = "bottleneck_jax.data"
_AR = "bottleneck_jax.architecture"
_Q = "bottleneck_jax.quantize"
_A = "bottleneck_jax.attention"
_BUILT: dict[str, dict] = {
    # --- compression ---
    "walloc": dict(
        functions=[f"bottleneck_jax.compression.{f}" for f in (
            "wavelet_packet_2d", "inverse_wavelet_packet_2d", "wavelet_packet_1d",
            "inverse_wavelet_packet_1d", "compand", "decompand", "walloc_bottleneck",
            "walloc_loss", "WaLLoC", "tile_latents", "untile_latents", "latents_to_webp",
            "webp_to_latents", "entropy_bottleneck", "EntropyBottleneck", "gaussian_conditional",
            "build_factorized_tables", "encode_symbols", "decode_symbols", "compress_image",
            "decompress_image")],
        experiments=["walloc-images"],
        tests=["tests/compression/test_wavelets.py", "tests/compression/test_entropy_models.py",
               "tests/compression/test_walloc.py", "tests/test_cli_compress.py"]),
    "bottlefit": dict(
        functions=[f"bottleneck_jax.compression.{f}" for f in (
            "head_distillation_loss", "kd_loss", "quantize_code", "dequantize_code", "code_bits",
            "data_reduction", "bottlefit_param_labels", "bottlefit_transform", "BottleneckHead",
            "SplitModel")],
        experiments=["bottlefit-digits"],
        tests=["tests/compression/test_bottlefit.py"]),
    "ard-vae": dict(
        functions=[f"bottleneck_jax.compression.{f}" for f in (
            "ard_prior_variance", "ard_kl", "ard_vae_loss", "relevance_scores", "relevant_axes",
            "ard_generate", "ARDVAE")],
        experiments=["ard-vae-synthetic"],
        tests=["tests/compression/test_ard_vae.py"]),
    "sae-data-selection": dict(
        functions=[f"bottleneck_jax.compression.{f}" for f in (
            "aggregate_features", "generalized_jaccard", "generalized_jaccard_matrix",
            "task_prototype", "score_candidates", "select_top_fraction", "sae_encode",
            "topk_activation", "SparseAutoencoder")],
        experiments=["sae-synthetic", "sae-data-selection"],
        tests=["tests/compression/test_sae_data_selection.py",
               "tests/ops/test_sparse_autoencoder.py"]),
    # --- end of compression ---
    "info-plane": dict(
        functions=["bottleneck_jax.information.binned_mi",
                   "bottleneck_jax.information.information_plane",
                   "bottleneck_jax.information.uniform_bin_codes",
                   "bottleneck_jax.information.row_entropy",
                   "bottleneck_jax.information.plot_information_plane",
                   "bottleneck_jax.information.LayerwiseMLP", f"{_D}.tishby12"],
        experiments=["info-plane-tishby"],
        tests=["tests/information/test_info_plane.py",
               "tests/information/test_entropy_estimators.py",
               "tests/experiments/test_info_plane_experiment.py"]),
    "cib-reasoning": dict(
        functions=["bottleneck_jax.information.token_surprisal",
                   "bottleneck_jax.information.cib_cost",
                   "bottleneck_jax.information.cib_reward",
                   "bottleneck_jax.information.cib_optimal_policy"],
        experiments=["cib-bandit"],
        tests=["tests/information/test_cib_reasoning.py"]),
    "cs-ib": dict(
        functions=["bottleneck_jax.information.cs_ib_loss",
                   "bottleneck_jax.information.conditional_cs_divergence",
                   "bottleneck_jax.information.cs_qmi",
                   "bottleneck_jax.information.cs_qmi_normalized",
                   "bottleneck_jax.information.cs_divergence",
                   "bottleneck_jax.information.CSIBRegressor"],
        experiments=["cs-ib-diabetes"],
        tests=["tests/information/test_cs_ib.py"]),
    "ib-generalization": dict(
        functions=["bottleneck_jax.information.gaussian_encoder_mi",
                   "bottleneck_jax.information.conditional_gaussian_encoder_mi",
                   "bottleneck_jax.information.layer_entropy_global_bins",
                   "bottleneck_jax.information.mi_constraint_step",
                   "bottleneck_jax.information.StochasticMLP"],
        experiments=["ib-mi-estimators", "mi-benchmark"],
        tests=["tests/information/test_ib_generalization.py"]),
    "cvib": dict(
        functions=["bottleneck_jax.information.vib_mask",
                   "bottleneck_jax.information.vib_mask_kl",
                   "bottleneck_jax.information.vib_mask_log_alpha",
                   "bottleneck_jax.information.cross_view_infonce",
                   "bottleneck_jax.information.cvib_losses",
                   "bottleneck_jax.information.VIBMask"],
        experiments=["cvib-noise-channels"],
        tests=["tests/information/test_cvib.py"]),
    "lossy-mi": dict(
        functions=["bottleneck_jax.information.lossy_mi",
                   "bottleneck_jax.information.pca_fit",
                   "bottleneck_jax.information.pca_transform",
                   "bottleneck_jax.information.noisy_forward",
                   "bottleneck_jax.information.kl_entropy"],
        experiments=["lossy-mi-synthetic"],
        tests=["tests/information/test_lossy_mi.py",
               "tests/information/test_entropy_estimators.py"]),
    "hib": dict(
        functions=["bottleneck_jax.information.hib_loss",
                   "bottleneck_jax.information.infonce_bilinear",
                   "bottleneck_jax.information.HistoryEncoder",
                   "bottleneck_jax.information.PrivilegedEncoder"],
        experiments=["hib-hidden-params"],
        tests=["tests/information/test_hib.py"]),
    "adaptive-mi": dict(
        functions=["bottleneck_jax.information.equal_count_bin_edges",
                   "bottleneck_jax.information.adaptive_binned_mi",
                   "bottleneck_jax.information.adaptive_kde_mi",
                   "bottleneck_jax.information.kde_mi"],
        experiments=["info-plane-relu"],
        tests=["tests/information/test_adaptive_mi.py",
               "tests/information/test_entropy_estimators.py"]),
    "vib": dict(
        functions=["bottleneck_jax.information.vib", "bottleneck_jax.information.vib_rate",
                   "bottleneck_jax.information.vib_loss",
                   "bottleneck_jax.information.vib_predictive_logprobs",
                   "bottleneck_jax.core.distributions.diag_gaussian_kl_std_normal",
                   "bottleneck_jax.information.VIBClassifier"],
        experiments=["vib-digits", "vib-digits-sweep"],
        tests=["tests/information/test_vib.py", "tests/experiments/test_vib_digits.py"]),
    "chronicals": dict(
        functions=[f"{_O}.linear_cross_entropy", f"{_O}.linear_logit_stats", f"{_O}.rms_norm",
                   f"{_O}.swiglu", f"{_O}.swiglu_linear", f"{_O}.apply_rope", f"{_O}.qk_rope",
                   f"{_E}.lora_plus", f"{_E}.lora_linear", f"{_D}.pack_sequences",
                   f"{_D}.packed_attention_mask"],
        experiments=["chronicals-cce-memory", "chronicals-packing", "chronicals-lora-plus"],
        tests=["tests/ops/test_linear_cross_entropy.py",
               "tests/ops/test_fused_ops.py",
               "tests/efficiency/test_chronicals.py",
               "tests/data/test_packing.py"],
        note="CE fwd+bwd temp memory 53.2x below optax at N=8192, d=2048, V=128256 (BENCHMARKS.md)"),
    "sparton": dict(
        functions=[f"{_E}.lexical_max_pool", f"{_E}.flops_regularizer", f"{_E}.SpladeHead"],
        experiments=["splade-toy"],
        tests=["tests/efficiency/test_sparton.py", "tests/experiments/test_splade_toy.py"],
        note="fwd+bwd temp memory 52.8x below a plain head at B=32, L=256, V=30522 (BENCHMARKS.md)"),
    "lexlip": dict(
        functions=[f"{_E}.lexicon_bottleneck", f"{_E}.lexicon_weighting",
                   f"{_E}.lexlip_contrastive_loss", f"{_E}.LexiconHead"],
        experiments=["lexlip-toy"],
        tests=["tests/efficiency/test_lexlip.py", "tests/experiments/test_lexlip_toy.py"]),
    "wta-crs": dict(
        functions=[f"{_E}.wta_crs_linear", f"{_E}.wta_crs_sample", f"{_E}.crs_sample",
                   f"{_E}.WTACRSLinear"],
        experiments=["wta-crs-memory"],
        tests=["tests/efficiency/test_wta_crs.py"]),
    # --- attention ---
    "kinetics": dict(
        functions=[f"{_A}.kinetics_cost", f"{_A}.expected_cost", f"{_A}.pass_at_k",
                   f"{_A}.pareto_frontier", f"{_A}.qwen3_config", f"{_A}.block_means",
                   f"{_A}.update_block_means", f"{_A}.block_scores", f"{_A}.select_blocks",
                   f"{_A}.block_topk_decode", f"{_A}.BlockTopKAttention",
                   f"{_O}.block_sparse_attention", f"{_O}.block_sparse_decode",
                   f"{_O}.block_mask_to_table"],
        experiments=["kinetics-cost"],
        tests=["tests/attention/test_kinetics.py", "tests/ops/test_block_sparse_attention.py"]),
    "bottlenecked-transformer": dict(
        functions=[f"{_A}.{f}" for f in (
            "step_boundaries", "recall_indices", "kv_rewrite", "consolidate", "CacheProcessor")],
        experiments=["bottlenecked-consolidation-toy"],
        tests=["tests/attention/test_bottlenecked_transformer.py"]),
    "rettention": dict(
        functions=[f"{_A}.rettention_refresh", f"{_A}.rettention_sparse",
                   f"{_A}.rettention_step", f"{_A}.rettention_schedule",
                   f"{_A}.band_block_table", f"{_A}.RettentionSelfAttention"],
        experiments=["rettention-vs-topk"],
        tests=["tests/attention/test_rettention.py"]),
    "zipvl": dict(
        functions=[f"{_A}.{f}" for f in (
            "probe_attention", "accumulated_scores", "normalized_scores", "adaptive_keep_count",
            "select_important", "important_token_prefill", "build_mixed_kv", "mixed_kv_bits",
            "mixed_kv_decode_attention", "quantize_kv", "dequantize_kv", "pack_bits",
            "unpack_bits", "kv_bits")],
        experiments=["zipvl-ratio"],
        tests=["tests/attention/test_zipvl.py"]),
    # --- architecture ---
    "winner-init": dict(
        functions=[f"{_AR}.siren_init", f"{_AR}.winner_init", f"{_AR}.spectral_centroid",
                   f"{_AR}.winner_scales", f"{_AR}.siren_apply", f"{_AR}.Siren"],
        experiments=["winner-siren"],
        tests=["tests/architecture/test_winner_init.py",
               "tests/architecture/test_experiments.py"]),
    "shc": dict(
        functions=[f"{_AR}.hc_init", f"{_AR}.hc_coeffs", f"{_AR}.hc_width", f"{_AR}.hc_depth",
                   f"{_AR}.hyper_connection", f"{_AR}.HyperConnection", f"{_AR}.sinkhorn",
                   f"{_AR}.spectral_normalize", f"{_AR}.expand_streams",
                   f"{_AR}.reduce_streams", f"{_AR}.product_norm"],
        experiments=["shc-depth"],
        tests=["tests/architecture/test_shc.py", "tests/architecture/test_experiments.py"]),
    "gpicl": dict(
        functions=[f"{_AR}.task_params", f"{_AR}.make_sequence", f"{_AR}.sample_batch",
                   f"{_AR}.GPICLTransformer", f"{_AR}.gpicl_loss",
                   f"{_AR}.per_position_accuracy", f"{_AR}.state_size"],
        experiments=["gpicl-digits"],
        tests=["tests/architecture/test_gpicl.py", "tests/architecture/test_experiments.py"]),
    "bottleneck-sampling": dict(
        functions=[f"{_AR}.bottleneck_sample", f"{_AR}.Stage", f"{_AR}.shift_sd3",
                   f"{_AR}.shift_flux", f"{_AR}.flux_mu", f"{_AR}.stage_timesteps",
                   f"{_AR}.euler_flow_stage", f"{_AR}.renoise", f"{_AR}.resize_latent",
                   f"{_AR}.sampling_cost"],
        experiments=["bottleneck-sampling-toy"],
        tests=["tests/architecture/test_bottleneck_sampling.py",
               "tests/architecture/test_experiments.py"]),
    # --- quantize ---
    "dkvb": dict(
        functions=[f"{_Q}.dkvb", f"{_Q}.dkvb_project", f"{_Q}.dkvb_init_keys",
                   f"{_Q}.DiscreteKeyValueBottleneck", f"{_Q}.nearest_code", f"{_Q}.kmeans"],
        experiments=["dkvb-incremental"],
        tests=["tests/quantize/test_dkvb.py", "tests/quantize/test_dkvb_experiment.py",
               "tests/quantize/test_nearest_code.py", "tests/quantize/test_vq_training.py"]),
    "vq-logits": dict(
        functions=[f"{_Q}.{f}" for f in (
            "vq_code_logits", "vq_logits", "vq_logits_cross_entropy", "vq_logits_sample",
            "vq_logits_init_mapping", "VQLogitsHead")] + [f"{_O}.linear_cross_entropy"],
        experiments=["vq-logits-toy"],
        tests=["tests/quantize/test_vq_logits.py"]),
    "skintokens-fsq": dict(
        functions=[f"{_Q}.{f}" for f in (
            "fsq", "fsq_codes_to_indices", "fsq_indices_to_codes", "FSQ", "residual_fsq",
            "residual_fsq_decode", "FSQCVAE", "quantize_coordinates", "dequantize_coordinates",
            "rig_token_sequence", "split_rig_token_sequence")],
        experiments=["skintokens-skinning", "fsq-digits", "vq-digits"],
        tests=["tests/quantize/test_fsq.py", "tests/quantize/test_skintokens_fsq.py",
               "tests/quantize/test_vqpytorch_parity.py", "tests/quantize/test_residual.py",
               "tests/quantize/test_fsq_experiments.py"]),
    "lpgnas": dict(
        functions=[f"{_Q}.{f}" for f in (
            "fixed_point_quantize", "binary_quantize", "ternary_quantize", "QuantSpec",
            "quantize_with", "mixed_quantize", "mixed_op", "expected_bits", "QuantGCNLayer")],
        experiments=["lpgnas-graph"],
        tests=["tests/quantize/test_lpgnas.py"]),
    "codebook-features": dict(
        functions=[f"{_Q}.{f}" for f in (
            "codebook_snap", "group_codebook_snap", "CodebookLayer", "GroupCodebookLayer")],
        experiments=["codebook-digits"],
        tests=["tests/quantize/test_codebook_features.py",
               "tests/quantize/test_codebook_experiment.py"]),
    # --- end of quantize ---
    # --- objectives: substrate .. agentcpm-explore ---
    "vpo": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "vpo_loss", "vpo_tabular_loss", "dpo_loss", "dpo_logits", "seq_logps")],
        experiments=["vpo-bandit"],
        tests=["tests/objectives/test_vpo.py", "tests/objectives/test_policy_gradient.py",
               "tests/experiments/test_objectives_toys.py"]),
    "hicra": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "hicra_advantages", "hicra_verl_advantages", "sg_planning_mask", "sg_match_counts",
            "semantic_entropy", "group_advantages", "grpo_loss")],
        experiments=["grpo-hicra-toy"],
        tests=["tests/objectives/test_hicra.py", "tests/objectives/test_policy_gradient.py",
               "tests/experiments/test_objectives_toys.py"]),
    "remix": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "mix_policy_ppg_loss", "kl_convex", "remix_schedule", "ReplayBuffer",
            "clipped_pg_per_token", "aggregate_token_loss", "k3_kl")],
        experiments=["remix-offpolicy-toy"],
        tests=["tests/objectives/test_remix.py", "tests/objectives/test_policy_gradient.py",
               "tests/experiments/test_objectives_toys.py"]),
    "editreward": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "gaussian_bt_loss", "gaussian_bt_loss_mc", "btt_loss", "btt_probs", "bt_loss",
            "fuse_heads", "MultiHeadRewardHead")],
        experiments=["editreward-toy"],
        tests=["tests/objectives/test_editreward.py",
               "tests/experiments/test_objectives_toys.py"]),
    "agentcpm-explore": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "denoise_keep_mask", "balance_keep_mask", "group_has_signal",
            "rank_zero_sum_adjust", "merge_linear", "merge_task_arithmetic", "merge_ties")],
        experiments=["agentcpm-merge-toy"],
        tests=["tests/objectives/test_agentcpm_explore.py",
               "tests/experiments/test_objectives_toys.py"]),
    # --- end of objectives: substrate .. agentcpm-explore ---
    # --- objectives: marag-r1 .. chart-perception ---
    "marag-r1": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "semantic_search", "keyword_search", "bm25_scores", "filter_docs", "aggregate_docs",
            "token_f1", "document_coverage", "marag_reward")] + [f"{_D}.retrieval_corpus"],
        experiments=["marag-corpus-coverage"],
        tests=["tests/objectives/test_marag_r1.py",
               "tests/experiments/test_marag_retrieval.py"]),
    "chi0": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "mix_params", "inverse_loss_weights", "simplex_grad", "optimize_mix_weights",
            "greedy_soup", "stage_progress", "stage_advantage", "discretize_advantage",
            "chunk_crossfade")],
        experiments=["merging-toy"],
        tests=["tests/objectives/test_chi0.py", "tests/experiments/test_chi0_merging.py"]),
    "plasticity": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "fraction_active_units", "per_layer_fau", "dormant_ratio", "arr_init", "arr_update",
            "updates_at_step", "ReLUMLP")],
        experiments=["plasticity-fau"],
        tests=["tests/objectives/test_plasticity.py",
               "tests/experiments/test_plasticity_fau.py"]),
    "brl": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "longtail_counts", "action_aware_weights", "drw_class_weights", "weighted_ce",
            "mixed_label_ce", "rebalance_alpha", "body_part_mix")],
        experiments=["brl-longtail-blobs"],
        tests=["tests/objectives/test_brl.py", "tests/experiments/test_brl_longtail.py"]),
    "chart-perception": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "clip_loss", "negclip_loss", "hard_negative_accuracy", "ContrastiveTowers")],
        experiments=["chart-negclip-toy"],
        tests=["tests/objectives/test_chart_perception.py",
               "tests/experiments/test_chart_negclip.py"]),
    "graph-rlearner": dict(
        functions=[f"bottleneck_jax.objectives.{f}" for f in (
            "r_loss", "cross_fit", "linear_final_stage", "linear_cate", "gcn_norm", "GCNLayer",
            "GraphCATE")],
        experiments=["rlearner-graph"],
        tests=["tests/objectives/test_graph_rlearner.py",
               "tests/experiments/test_rlearner_graph.py"]),
    # --- end of objectives: marag-r1 .. chart-perception ---
    # --- concepts ---
    "cbm": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "bottleneck", "bce_with_logits", "cbm_loss", "intervention_percentiles", "intervene",
            "random_group_mask", "uncertainty_group_mask", "intervention_curve",
            "concept_accuracy", "auc_roc", "ConceptBottleneckModel")] + [f"{_D}.koh_concepts"],
        experiments=["cbm-interventions"],
        tests=["tests/concepts/test_cbm.py", "tests/data/test_concepts_data.py"]),
    "pcbm": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "learn_cavs", "text_concept_bank", "concept_margins", "fit_elastic_net_head",
            "pcbm_logits", "pcbm_h_logits", "prune_concepts", "top_concepts", "PosthocCBM",
            "PosthocHybridCBM")] + [f"{_D}.confounded_embeddings"],
        experiments=["pcbm-edit"],
        tests=["tests/concepts/test_pcbm.py"]),
    "concept-metrics": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "cgim", "cem_at_k", "coam", "clm", "pointing_hit", "relevance_mass", "peak_distance",
            "region_metrics")] + [f"{_D}.concept_sprites"],
        experiments=["concept-location"],
        tests=["tests/concepts/test_concept_metrics.py", "tests/concepts/test_saliency.py"]),
    "labo": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "class_concept_similarity", "labo_mi_score", "facility_location_value",
            "greedy_submodular", "select_per_class", "labo_init_assoc", "labo_logits",
            "LaBoHead")] + [f"{_D}.concept_embeddings"],
        experiments=["labo-selection"],
        tests=["tests/concepts/test_labo.py"]),
    "sparse-cbm": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "gumbel_softmax", "sparse_cbm_apply", "loss_gumbel", "loss_contrastive", "loss_l1",
            "loss_cos_cubed", "concept_matrix_search", "SparseCBMHead")],
        experiments=["sparse-cbm-search"],
        tests=["tests/concepts/test_sparse_cbm.py"]),
    "knobo": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "fit_concept_probes", "concept_probs", "prior_matrix", "knobo_prior_loss",
            "knobo_loss", "shift_report", "KnoBoHead")] + [f"{_D}.confounded_embeddings"],
        experiments=["knobo-shift"],
        tests=["tests/concepts/test_knobo.py"]),
    "dn-cbm": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "resample_dead", "name_concepts", "sparse_probe_loss", "explanation_size",
            "ConceptSAE")] + [f"bottleneck_jax.ops.{f}" for f in (
            "sae_encode", "sae_decode", "sae_loss", "normalize_decoder")]
        + [f"{_D}.sparse_dictionary"],
        experiments=["dn-cbm-dictionary"],
        tests=["tests/concepts/test_dn_cbm.py", "tests/ops/test_sparse_autoencoder.py"]),
    "cbm-input-features": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "class_level_labels", "oracle_impurity", "saliency_grad", "saliency_grad_x_input",
            "integrated_gradients", "relevance_mass")] + [f"{_D}.two_slot"],
        experiments=["cbm-cooccurrence"],
        tests=["tests/concepts/test_cbm_input_features.py", "tests/concepts/test_saliency.py"]),
    "sl-cbm": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "slcbm_init", "slcbm_concept_maps", "simpool", "slcbm_apply", "nec_mask",
            "token_concept_entropy", "slcbm_loss", "slcbm_contrastive", "class_saliency",
            "upsample_token_map", "attribution_iou", "SLCBMHead")] + [f"{_D}.concept_sprites"],
        experiments=["sl-cbm-sprites"],
        tests=["tests/concepts/test_sl_cbm.py", "tests/concepts/test_saliency.py"]),
    "ecbm": dict(
        functions=[f"bottleneck_jax.concepts.{f}" for f in (
            "ecbm_init", "ecbm_energies", "ecbm_train_energies", "boltzmann_nll", "ecbm_loss",
            "ecbm_infer", "ecbm_intervene", "ecbm_conditionals", "concept_importance",
            "ECBMHead")] + [f"{_D}.concept_sprites"],
        experiments=["ecbm-sprites"],
        tests=["tests/concepts/test_ecbm.py"]),
    # --- end of concepts ---
}

# Base methods that other papers build on (not rows of papers.md).
_BASE: list[Entry] = [
    _P(0, "vib", "information",
       "Deep Variational Information Bottleneck (Alemi, Fischer, Dillon, Murphy; ICLR 2017)",
       "Dec 1, 2016",
       note="base method: the Gaussian-encoder IB every information-family paper builds on"),
    _P(0, "cbm", "concepts",
       "Concept Bottleneck Models (Koh, Nguyen, Tang, Mussmann, Pierson, Kim, Liang; ICML 2020)",
       "Jul 9, 2020",
       note="base method: concept heads, bottleneck modes and interventions every "
            "concepts-family paper builds on"),
]


def _with_built(e: Entry) -> Entry:
  b = _BUILT.get(e.id)
  if not b:
    return e
  return dataclasses.replace(e, **{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in b.items()})


def paper_ids() -> list[str]:
  """The 49 catalogue ids of shared/papers.md, in its order."""
  return [e.id for e in _PAPERS]


def entries(family: str | None = None, status: str | None = None,
            include_base: bool = True) -> list[Entry]:
  """Catalogue rows, optionally filtered by family and status."""
  if family is not None and family not in FAMILIES:
    raise ValueError(f"entries: family must be one of {list(FAMILIES)}, got {family!r}")
  if status is not None and status not in STATUSES:
    raise ValueError(f"entries: status must be one of {list(STATUSES)}, got {status!r}")
  rows = [_with_built(e) for e in (_BASE if include_base else []) + _PAPERS]
  return [e for e in rows
          if (family is None or e.family == family) and (status is None or e.status == status)]


def get(id_: str) -> Entry:
  """The row with catalogue id ``id_``."""
  for e in entries():
    if e.id == id_:
      return e
  raise ValueError(f"get: unknown catalogue id {id_!r}; see `bottleneck-jax list`")


def resolve(path: str):
  """Imports a dotted path ``package.module.name`` and returns the object."""
  mod, _, name = path.rpartition(".")
  return getattr(importlib.import_module(mod), name)


def format_table(rows: list[Entry] | None = None) -> str:
  """A plain-text table of the rows (id, family, status, experiments, title)."""
  rows = entries() if rows is None else rows
  header = ("#", "id", "family", "status", "experiments", "title")
  data = [(str(e.number) if e.number else "base", e.id, e.family, e.status,
           ",".join(e.experiments) or "-", e.title if len(e.title) <= 70 else e.title[:67] + "...")
          for e in rows]
  widths = [max(len(h), *(len(r[i]) for r in data)) if data else len(h)
            for i, h in enumerate(header)]
  fmt = "  ".join(f"{{:<{w}}}" for w in widths)
  lines = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
  lines += [fmt.format(*r).rstrip() for r in data]
  counts = {s: sum(e.status == s for e in rows) for s in STATUSES}
  lines.append("")
  lines.append(f"{len(rows)} rows: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
  return "\n".join(lines)


def to_json(rows: list[Entry] | None = None) -> str:
  """The rows as a JSON list (with computed status)."""
  rows = entries() if rows is None else rows
  return json.dumps([e.to_dict() for e in rows], indent=2)


__all__ = [
    "Entry",
    "FAMILIES",
    "STATUSES",
    "entries",
    "format_table",
    "get",
    "paper_ids",
    "record_problem",
    "recorded_results",
    "resolve",
    "to_json",
]
