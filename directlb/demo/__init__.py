"""Scenarios that start the stand-ins and the controller and show the seed's claims."""
