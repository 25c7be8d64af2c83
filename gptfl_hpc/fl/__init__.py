"""Stage 4: the federated-learning simulator."""
