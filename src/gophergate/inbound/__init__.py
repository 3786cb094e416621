"""Client-facing wire formats other than OpenAI chat, translated to and from the gateway's chat call form."""
