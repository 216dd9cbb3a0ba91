"""Pictures: compositing, face crops and paste-back, contact sheets."""
