CREATE INDEX "feedback_events_type_at_idx" ON "feedback_events" USING btree ("type","occurred_at");--> statement-breakpoint
CREATE INDEX "delivery_attempts_started_idx" ON "delivery_attempts" USING btree ("started_at");--> statement-breakpoint
CREATE INDEX "audit_log_actor_idx" ON "audit_log" USING btree ("actor","at");