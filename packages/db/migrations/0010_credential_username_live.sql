DROP INDEX "smtp_credentials_username_key";--> statement-breakpoint
CREATE UNIQUE INDEX "smtp_credentials_username_key" ON "smtp_credentials" USING btree ("username") WHERE revoked_at IS NULL;