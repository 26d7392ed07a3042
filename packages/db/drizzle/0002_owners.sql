CREATE TABLE "sandboxes" (
	"id" text PRIMARY KEY NOT NULL,
	"backend" text NOT NULL,
	"instance_id" text NOT NULL,
	"session_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "sessions" DROP CONSTRAINT "sessions_state_check";--> statement-breakpoint
DROP INDEX "sessions_owner_live";--> statement-breakpoint
CREATE INDEX "sandboxes_instance" ON "sandboxes" USING btree ("instance_id");--> statement-breakpoint
CREATE INDEX "sessions_owner_live" ON "sessions" USING btree ("owner_id") WHERE "sessions"."state" IN ('creating', 'running', 'stopped', 'destroying');--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_state_check" CHECK ("sessions"."state" IN ('creating', 'running', 'stopped', 'destroying', 'destroyed', 'failed'));--> statement-breakpoint
-- Sandboxes of sessions that already exist get their owner record, so reconciliation treats them like new ones.
INSERT INTO "sandboxes" ("id", "backend", "instance_id", "session_id", "created_at")
SELECT "sandbox_id", "backend", "instance_id", "id", "created_at" FROM "sessions"
WHERE "sandbox_id" IS NOT NULL AND "state" <> 'destroyed'
ON CONFLICT DO NOTHING;
