"""What the user says: flags, the environment, `.env`, and the session record that remembers it.

The only importer of python-dotenv. Domain parts never see `Settings`; commands pass them plain values.
"""
