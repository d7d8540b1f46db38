"""Results and what is read off them: metrics, figures."""
