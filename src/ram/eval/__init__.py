"""Evaluation: answer metrics, bootstrap intervals, and result reports."""
