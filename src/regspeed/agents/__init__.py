"""Reinforcement-learning trainers that follow the Trainer contract."""
