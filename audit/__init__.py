"""Audit: export case histories, replay them against the current workflow code, rebuild the
timeline from history alone and cross-check it against the read model."""
