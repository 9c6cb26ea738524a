"""The Academy: a Testing Droid attacks a student persona, a Protocol Sheriff judges, the student trains a
defense adapter and graduates when held-out attacks stop working."""
