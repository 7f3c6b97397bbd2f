"""What only the evaluation sees: detection metrics on labels, the PyOD baselines, and the plot stage's figures."""
