"""How many rows one request may ask for; the WebSocket methods and the CLI share them.

No imports: the CLI reads these before anything else is loaded.
"""

SESSIONS_LISTED = 5000  # sessions.list, clawgate sessions list
SESSION_ROWS = 1000  # sessions.get, clawgate sessions show: runs, messages, replies each
HISTORY_ENTRIES = 5000  # chat.history
