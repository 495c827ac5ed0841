"""The stages, side by side: prepare, features, train, evaluate, score, bench and report. A
stage never imports another; each reads its inputs through study.core.store. The command
line (study.run) lists which stage calls each command makes."""
