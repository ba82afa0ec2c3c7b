"""`deepfaune review`: a person goes through what needs their eyes and corrects it, in a local web app.

session.py holds the review (the source's files, DeepFaune's decisions, the people's labels kept in the
result store as they are made); server.py serves it to one browser on 127.0.0.1; cli.py is the command.
"""
