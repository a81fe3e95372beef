"""postsale's tables and the database engine factory (data only, no behaviour)."""

from models.db import create_db_engine, init_db, session_factory
from models.tables import (Customer, DeliveryEvent, Event, JourneyVersion, Message, Purchase, Run,
                           SurveyResponse, Suppression, Timeline, utcnow)

__all__ = ["Customer", "DeliveryEvent", "Event", "JourneyVersion", "Message", "Purchase", "Run",
           "SurveyResponse", "Suppression", "Timeline", "create_db_engine", "init_db",
           "session_factory", "utcnow"]
