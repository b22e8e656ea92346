"""A simulated Smappee Infinity installation: a house model that produces sample frames and
history (:mod:`.house`, pure numpy), and the device transports that stream them to the server
(:mod:`.transport`). ``python manage.py simulate`` drives both (:mod:`.stream`)."""
