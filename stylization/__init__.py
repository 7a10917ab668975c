"""Stylized talking-head generation: Style²Talker with StyleTalk and SAAS style encoders."""

__version__ = "0.1.0"
