"""Chronicals (2026): the fused parts of a high-performance LLM fine-tuning stack.

Submodules (re-exported by the lead once written): ``linear_cross_entropy`` (cut cross-entropy),
``fused`` (RMSNorm, SwiGLU, QK-RoPE), ``lora_plus`` (LoRA+), ``packing`` (sequence packing).
"""

__all__: list[str] = []
