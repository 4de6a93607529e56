"""Conversation insight: a message's language, sentiment and topic, read in memory and never stored.

The analyzers live in `analyzer.py` (`Analyzer`, `MessageInsight`); the text they read is prepared by
`text.py`, languages come from `language.py`, sentiment scores from `sentiment.py`, topics from the
admin's rules in `topics.py`. This root imports nothing so that importing the package loads no model:
each model is loaded once per process, on first use.
"""
