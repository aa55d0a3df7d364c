ALTER TABLE "messages" ALTER COLUMN "member_id" DROP NOT NULL;--> statement-breakpoint
-- Forwards made before this spooled under a placeholder member standing for the pool
-- (did:web:<pool domain>, status pending): they become the pool's own mail, and the
-- placeholder, which never held credentials or keys, goes.
UPDATE "messages" SET "member_id" = NULL WHERE "member_id" IN (
  SELECT "id" FROM "members" WHERE "did" LIKE 'did:web:%' AND "status" = 'pending'
    AND "status_reason" = 'the pool itself: operator mail forwarding');--> statement-breakpoint
DELETE FROM "members" WHERE "did" LIKE 'did:web:%' AND "status" = 'pending'
  AND "status_reason" = 'the pool itself: operator mail forwarding';
