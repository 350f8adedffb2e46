"""The ngrok tunnel: the agent, the keeper that holds it open, what the edge says, and the hooks.

The only part that imports pyngrok or runs the ngrok binary.
"""
