"""The files a report writes into a results folder.

Their names live apart from the report's code so that a sweep can refuse a results folder
its report could not write into before its first run, without importing the report.
"""

PLOTS = ("speedup_vs_sparsity.png", "energy_vs_sparsity.png", "energy_breakdown.png",
         "utilization.png", "noc_link_load.png", "realized_vs_ideal.png", "accuracy_vs_sparsity.png")
#: every file write_report writes in its folder
OUTPUT_FILES = ("summary.md", "comparison.json") + PLOTS
